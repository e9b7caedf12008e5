package ratelimit

import "strings"

// DefaultPrefix starts every key name unless Options.KeyPrefix says otherwise.
const DefaultPrefix = "rl"

// KeyNames is the key-naming rule, the only place key names are made. One key holds
// the log of one (resource, domain) pair; a resource with a Global limit (Global or
// GlobalCaps) also has one global key.
//
//	Global == 0: key = <prefix>:<resource>:{<domain>}   globalKey = ""
//	Global > 0:  key = <prefix>:{<resource>}:<domain>   globalKey = <prefix>:{<resource>}
//
// The part in braces is the Redis Cluster hash tag. With a global limit, the domain
// keys and the global key must share a hash slot (CHARON.RATE declares both keys, and
// the cluster refuses keys of different slots), so the tag is the resource and the
// whole resource lives on one node. Without one, the tag is the domain, so a busy
// resource's domains spread over the cluster. Turning a global limit on or off (from
// none to Global or GlobalCaps, or back) therefore moves a resource to new keys: its
// counts start again from zero.
//
// The names are escaped so a name can never break the hash tag: '%', '{' and '}'
// become "%25", "%7B" and "%7D". Under one prefix, distinct non-empty (resource,
// domain) pairs give distinct keys, and a global key never equals a domain key.
func KeyNames(prefix, resource, domain string, global bool) (key, globalKey string) {
	p, r, d := escapeName(prefix), escapeName(resource), escapeName(domain)
	if global {
		globalKey = p + ":{" + r + "}"
		return globalKey + ":" + d, globalKey
	}
	return p + ":" + r + ":{" + d + "}", ""
}

// escapeName percent-encodes the three bytes that could end or open a hash tag early.
func escapeName(s string) string {
	if !strings.ContainsAny(s, "%{}") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			b.WriteString("%25")
		case '{':
			b.WriteString("%7B")
		case '}':
			b.WriteString("%7D")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
