package concurrency

import "strings"

// DefaultPrefix starts every key name unless Options.KeyPrefix says otherwise.
const DefaultPrefix = "hd"

// KeyNames is the key-naming rule. Every key of a resource carries the resource as
// its Redis Cluster hash tag, because one request names the domain key, the global
// key and its group keys together and they must share a slot:
//
//	domain key  <prefix>:{<resource>}:d:<domain>
//	global key  <prefix>:{<resource>}
//	group key   <prefix>:{<resource>}:g:<group>
//
// '%', '{' and '}' in names become "%25", "%7B" and "%7D", so distinct names give
// distinct keys and a name never breaks the hash tag.
func KeyNames(prefix, resource, domain string) (key, globalKey string) {
	globalKey = escapeName(prefix) + ":{" + escapeName(resource) + "}"
	return globalKey + ":d:" + escapeName(domain), globalKey
}

// GroupKey is the key of one group of a resource.
func GroupKey(prefix, resource, group string) string {
	return escapeName(prefix) + ":{" + escapeName(resource) + "}:g:" + escapeName(group)
}

func escapeName(s string) string {
	if !strings.ContainsAny(s, "%{}") {
		return s
	}
	r := strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")
	return r.Replace(s)
}
