package hold

import (
	"bytes"
	"math/rand/v2"
	"sort"
	"testing"
)

type modelHold struct {
	id         uint64
	copies, dl int64
	seq        int // insertion order among equal deadlines
}

// check verifies every invariant of a View against the model.
func check(t *testing.T, v View, model map[uint64]*modelHold) {
	t.Helper()
	if v.Len() != len(model) {
		t.Fatalf("Len %d, model %d", v.Len(), len(model))
	}
	var held int64
	for id, m := range model {
		s := v.Find(id)
		if s < 0 {
			t.Fatalf("id %x not found", id)
		}
		gid, c, d := v.Hold(s)
		if gid != id || c != m.copies || d != m.dl {
			t.Fatalf("hold %x = (%x,%d,%d), model (%d,%d)", id, gid, c, d, m.copies, m.dl)
		}
		held += m.copies
	}
	if v.Held() != held {
		t.Fatalf("Held %d, model %d", v.Held(), held)
	}
	// The list visits every hold once, in (deadline, seq) order.
	want := make([]*modelHold, 0, len(model))
	for _, m := range model {
		want = append(want, m)
	}
	sort.Slice(want, func(i, j int) bool {
		if want[i].dl != want[j].dl {
			return want[i].dl < want[j].dl
		}
		return want[i].seq < want[j].seq
	})
	i := 0
	prev := -1
	for s := v.Head(); s >= 0; s = v.Next(s) {
		if i >= len(want) {
			t.Fatal("list longer than the model")
		}
		id, _, _ := v.Hold(s)
		if id != want[i].id {
			t.Fatalf("list position %d is %x, want %x", i, id, want[i].id)
		}
		if int(v.rec(s, fPrev))-1 != prev {
			t.Fatalf("prev link of slot %d is %d, want %d", s, v.rec(s, fPrev), prev+1)
		}
		prev = s
		i++
	}
	if i != len(want) || v.Tail() != prev {
		t.Fatalf("list has %d holds (tail %d), want %d (tail %d)", i, v.Tail(), len(want), prev)
	}
	if Find := v.Find(0x5eed5eed5eed5eed); Find >= 0 {
		t.Fatal("found an id never inserted")
	}
}

// grow mimics the glue: a full value is rebuilt at twice its capacity.
func grow(v View) View {
	if v == nil {
		return Init(make([]byte, SizeFor(MinCap)), MinCap)
	}
	if !v.Full() {
		return v
	}
	c := 2 * v.Cap()
	return v.Rebuild(make([]byte, SizeWith(c, v.TokCap())), c)
}

func TestLayoutRandomOps(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		model := map[uint64]*modelHold{}
		var v View = grow(nil)
		seq := 0
		var ids []uint64
		pick := func() uint64 {
			for len(ids) > 0 {
				i := r.IntN(len(ids))
				if _, ok := model[ids[i]]; ok {
					return ids[i]
				}
				ids[i] = ids[len(ids)-1]
				ids = ids[:len(ids)-1]
			}
			return 0
		}
		for op := 0; op < 3000; op++ {
			switch k := r.IntN(10); {
			case k < 5: // insert, deadlines mostly increasing, sometimes not
				id := r.Uint64() | 1
				if r.IntN(8) == 0 {
					id = uint64(r.IntN(64)) + 1 // small ids: collisions in the index
				}
				if _, ok := model[id]; ok {
					continue
				}
				v = grow(v)
				d := int64(op*10 + r.IntN(30))
				c := int64(r.IntN(5) + 1)
				seq++
				v.Insert(id, c, d)
				model[id] = &modelHold{id: id, copies: c, dl: d, seq: seq}
				ids = append(ids, id)
			case k < 7:
				if id := pick(); id != 0 {
					v.Remove(v.Find(id))
					delete(model, id)
				}
			case k < 8:
				if id := pick(); id != 0 {
					c := int64(r.IntN(9) + 1)
					v.SetCopies(v.Find(id), c)
					model[id].copies = c
				}
			case k < 9:
				if id := pick(); id != 0 {
					d := int64(op*10 + r.IntN(100))
					v.Move(v.Find(id), d)
					seq++
					model[id].dl, model[id].seq = d, seq
				}
			default:
				cut := int64(op*10 - 200)
				v.Prune(cut)
				for id, m := range model {
					if m.dl <= cut {
						delete(model, id)
					}
				}
			}
			if op%97 == 0 {
				check(t, v, model)
			}
		}
		check(t, v, model)

		// The persisted form round-trips through Build, and Build's layout serializes
		// to the same bytes.
		p := v.Serialize(nil)
		if _, err := Validate(p); err != nil {
			t.Fatalf("seed %d: own persisted form invalid: %v", seed, err)
		}
		w, err := Build(p, make([]byte, SizeFor(CapFor(v.Len()))))
		if err != nil {
			t.Fatal(err)
		}
		check(t, w, model)
		if !bytes.Equal(w.Serialize(nil), p) {
			t.Fatal("Build then Serialize differs")
		}
	}
}

func TestBuildRejectsRepeatedIDs(t *testing.T) {
	v := Init(make([]byte, SizeFor(MinCap)), MinCap)
	v.Touch(100, 5)
	v.Insert(7, 1, 200)
	v.Insert(8, 1, 300)
	p := v.Serialize(nil)
	copy(p[persistHdr+persistRec:], p[persistHdr:persistHdr+8]) // second id = first id
	if _, err := Validate(p); err != nil {
		t.Fatalf("Validate should leave uniqueness to Build: %v", err)
	}
	if _, err := Build(p, make([]byte, SizeFor(MinCap))); err == nil {
		t.Fatal("Build accepted a repeated id")
	}
}
