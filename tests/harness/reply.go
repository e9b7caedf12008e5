package harness

import (
	"context"
	"fmt"
	"testing"
)

// ReplyMap turns a map-shaped reply into a map keyed by field name: a RESP3 map,
// or a RESP2 flat array of name, value pairs. Any other shape is an error.
func ReplyMap(v any) (map[string]any, error) {
	out := map[string]any{}
	switch r := v.(type) {
	case map[any]any:
		for k, val := range r {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("map key %#v is not a string", k)
			}
			out[ks] = val
		}
	case []any:
		if len(r)%2 != 0 {
			return nil, fmt.Errorf("flat array of %d elements is not name, value pairs", len(r))
		}
		for i := 0; i < len(r); i += 2 {
			ks, ok := r[i].(string)
			if !ok {
				return nil, fmt.Errorf("element %d (%#v) is not a field name", i, r[i])
			}
			out[ks] = r[i+1]
		}
	default:
		return nil, fmt.Errorf("reply %#v (%T) is neither a map nor a flat array", v, v)
	}
	return out, nil
}

// Modules returns name -> version of the modules MODULE LIST reports on s.
func (s *Server) Modules(t testing.TB) map[string]int64 {
	t.Helper()
	v, err := s.ctl.Do(context.Background(), "MODULE", "LIST").Slice()
	if err != nil {
		t.Fatalf("harness: MODULE LIST on %s: %v", s.Addr(), err)
	}
	out := map[string]int64{}
	for _, e := range v {
		m, err := ReplyMap(e)
		if err != nil {
			t.Fatalf("harness: MODULE LIST entry on %s: %v", s.Addr(), err)
		}
		name, ok1 := m["name"].(string)
		ver, ok2 := m["ver"].(int64)
		if !ok1 || !ok2 {
			t.Fatalf("harness: MODULE LIST entry on %s lacks name/ver: %#v", s.Addr(), m)
		}
		out[name] = ver
	}
	return out
}
