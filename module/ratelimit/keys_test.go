package ratelimit

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// hashTag is the part of a key Redis Cluster hashes: the bytes between the first '{'
// and the first '}' after it, when that is not empty; otherwise the whole key.
func hashTag(key string) string {
	s := strings.IndexByte(key, '{')
	if s < 0 {
		return key
	}
	e := strings.IndexByte(key[s+1:], '}')
	if e <= 0 {
		return key
	}
	return key[s+1 : s+1+e]
}

func TestKeyNames(t *testing.T) {
	cases := []struct {
		prefix, res, dom string
		global           bool
		key, gkey, tag   string
	}{
		{"rl", "api", "alice", false, "rl:api:{alice}", "", "alice"},
		{"rl", "api", "alice", true, "rl:{api}:alice", "rl:{api}", "api"},
		{"rl", "a{b", "c}d", false, "rl:a%7Bb:{c%7Dd}", "", "c%7Dd"},
		{"rl", "a}b", "{c}", true, "rl:{a%7Db}:%7Bc%7D", "rl:{a%7Db}", "a%7Db"},
		{"rl", "100%", "x", true, "rl:{100%25}:x", "rl:{100%25}", "100%25"},
		{"my{app}", "api", "u", true, "my%7Bapp%7D:{api}:u", "my%7Bapp%7D:{api}", "api"},
		{"rl", "api", "a:b", false, "rl:api:{a:b}", "", "a:b"},
	}
	for _, c := range cases {
		key, gkey := KeyNames(c.prefix, c.res, c.dom, c.global)
		require.Equal(t, c.key, key, "%+v", c)
		require.Equal(t, c.gkey, gkey, "%+v", c)
		require.Equal(t, c.tag, hashTag(key), "%+v", c)
		if c.global {
			require.Equal(t, hashTag(key), hashTag(gkey), "domain and global key must share a slot")
		}
	}
}

// Random names made of the troublesome bytes: the rule must stay injective, keep the
// hash tag on the resource (global) or domain (not global), and never let a global key
// equal a domain key.
func TestKeyNamesInjective(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := "{}%:a"
	name := func() string {
		n := 1 + rng.IntN(4)
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	seen := map[string]string{}
	for i := 0; i < 20000; i++ {
		res, dom, global := name(), name(), rng.IntN(2) == 0
		key, gkey := KeyNames("rl", res, dom, global)
		id := res + "\x00" + dom + "\x00" + map[bool]string{true: "g", false: "-"}[global]
		if prev, ok := seen[key]; ok {
			require.Equal(t, prev, id, "key %q made by two different inputs", key)
		}
		seen[key] = id
		if global {
			require.Equal(t, escapeName(res), hashTag(key))
			require.Equal(t, hashTag(key), hashTag(gkey))
			if prev, ok := seen[gkey]; ok {
				require.Equal(t, "global "+res, prev, "global key %q collides", gkey)
			}
			seen[gkey] = "global " + res
		} else {
			require.Equal(t, escapeName(dom), hashTag(key))
		}
	}
}
