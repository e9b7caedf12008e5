package local

import (
	"fmt"
	"testing"
)

// BenchmarkObserve is what the degraded mode adds to every request while Redis
// answers; BenchmarkDecide is a local decision while it does not.
func BenchmarkObserve(b *testing.B) {
	tb := New(Config{})
	domains := make([]string, 1000)
	for i := range domains {
		domains[i] = fmt.Sprint("user", i)
	}
	b.ReportAllocs()
	for i := range b.N {
		tb.Observe("api", domains[i%len(domains)], Reply{Granted: 1, DomainHits: 5, GlobalHits: 80}, base+int64(i/100))
	}
}

func BenchmarkDecide(b *testing.B) {
	tb := New(Config{Prior: 0.25})
	lim := perSecond()
	domains := make([]string, 1000)
	for i := range domains {
		domains[i] = fmt.Sprint("user", i)
		tb.Observe("api", domains[i], Reply{Granted: 1, DomainHits: 5, GlobalHits: 80}, base)
	}
	tb.Enter()
	b.ReportAllocs()
	for i := range b.N {
		if _, err := tb.Decide("api", domains[i%len(domains)], lim, 1, 1, false, base+int64(i/100)); err != nil {
			b.Fatal(err)
		}
	}
}
