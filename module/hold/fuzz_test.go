package hold

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/charon-redis/charon/cshim/holdcheck"
)

// FuzzParse: any argument list parses or fails with an *ArgError, never panics, and a
// parsed request respects every bound.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"MAX 3 MIN 1 LIMIT 5 GLOBAL g 10 LEASE 1000 AT 4102444800000 GROUP a 1 b 2",
		"LIMIT 0 DRYRUN", "MAX 1000000000001 LIMIT 1", "GROUP a", "ID 00000000000000ff LIMIT 1 LAG 5",
		"0123456789abcdef COPIES 2 GLOBAL g GROUP a b c", "0123456789ABCDEF TTL 5", "ffffffffffffffff LEASE 1",
	} {
		for c := Reserve; c <= Seize; c++ {
			f.Add(uint8(c), s)
		}
	}
	var req Request
	f.Fuzz(func(t *testing.T, c uint8, line string) {
		cmd := Cmd(c % 5)
		var args [][]byte
		for _, a := range strings.Fields(line) {
			args = append(args, []byte(a))
		}
		err := Parse(cmd, args, &req)
		if err != nil {
			var ae *ArgError
			if !errors.As(err, &ae) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if req.Max < 1 || req.Max > MaxCount || req.Min < 0 || req.Min > req.Max ||
			req.Lease < 1 || req.Lease > MaxDuration || req.At < 0 || req.At > MaxAt || req.NGroups > MaxGroups {
			t.Fatalf("out of bounds: %+v", req)
		}
		if cmd == Reserve && !req.HasLimit && !req.HasGlobal && req.NGroups == 0 {
			t.Fatal("a reserve without any limit parsed")
		}
		if cmd == Transfer && req.TTL < 1 {
			t.Fatal("a transfer without TTL parsed")
		}
		_ = req.CheckKeys([]byte("k"), args)
	})
}

// FuzzDecode: any bytes are refused or accepted by Validate/Build without panicking;
// an accepted form serializes back to itself, and its layout works.
func FuzzDecode(f *testing.F) {
	v := Init(make([]byte, SizeFor(8)), 8)
	v.Touch(4102444800000, 5)
	f.Add(v.Serialize(nil))
	for i := 0; i < 5; i++ {
		v.Insert(uint64(i+1)*0x1234567, int64(i+1), 4102444860000+int64(i/2))
	}
	good := v.Serialize(nil)
	f.Add(good)
	for i := 0; i < len(good); i += 7 {
		b := bytes.Clone(good)
		b[i] ^= 0x41
		f.Add(b)
	}
	f.Add(good[:len(good)-1])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		n, err := Validate(p)
		// C (rdb_load, RESTORE, CHARON.LOADHOLD) and Go apply the same rules.
		cn := holdcheck.Check(p)
		if (err == nil) != (cn >= 0) || err == nil && cn != n {
			t.Fatalf("Validate: %d holds, %v; C's charon_hold_check: %d", n, err, cn)
		}
		if err != nil {
			return
		}
		shape, _ := Inspect(p)
		w, err := Build(p, make([]byte, shape.Size()))
		mem, cok := holdcheck.MemLayout(p)
		if (err == nil) != cok || err == nil && !bytes.Equal(mem, w) {
			t.Fatalf("Build: %v; C's build ok %v; layouts equal: %v", err, cok, err == nil && bytes.Equal(mem, w))
		}
		if err != nil {
			return
		}
		// The current version serializes back to itself; version 1 to the current
		// version with fence 0 and no tokens, the same bytes in Go and in C.
		q := w.Serialize(nil)
		if shape.Ver == EncVer && !bytes.Equal(q, p) {
			t.Fatal("an accepted form does not serialize back to itself")
		}
		if shape.Ver == EncVer1 && (!bytes.Equal(q[:32], append([]byte{EncVer, 0, 0, 0, 0, 0, 0, 0}, p[8:32]...)) ||
			!bytes.Equal(q[32:48], make([]byte, 16)) || !bytes.Equal(q[48:], p[32:])) {
			t.Fatal("a version 1 form is not rewritten as the same holds with fence 0 and no tokens")
		}
		if c, ok := holdcheck.RoundTrip(p); !ok || !bytes.Equal(c, q) {
			t.Fatal("C serializes the value differently")
		}
		// The layout stays usable: prune everything, insert one hold.
		w.Prune(MaxAt + MaxDuration)
		if w.Len() != 0 || w.Held() != 0 {
			t.Fatal("prune left holds")
		}
		w.Insert(1, 1, 1)
		if w.Find(1) != 0 {
			t.Fatal("insert after prune")
		}
	})
}
