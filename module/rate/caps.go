package rate

import "strconv"

// Windowed caps (rule 10). A cap n/W bounds the hits granted under one key over the
// last W ms: per-domain caps (CAP n W, the caps after ';' in LIMITS, HARD n = n/1000)
// count the key's grants, global caps (GLOBAL gkey n = n/1000, or a caps string)
// every grant under the global key. Caps over exactly 1000 ms are HARD and GLOBAL's
// limit, counted by the second logs as before; the others are stored in the key:
// windows below 1000 ms count the log exactly (a cursor, like the second log's),
// longer ones in buckets of g = ceil(W/1000) ms (FORMAT.md, "bucket log").

// MaxCaps bounds the caps of one key, HARD (or GLOBAL's per-second limit) included.
const MaxCaps = 8

// secondWindow is the window of HARD and of GLOBAL's limit: the second logs'.
const secondWindow = 1000

// Cap is one windowed cap: at most Limit hits in any Window ms.
type Cap struct {
	Limit  int64
	Window int64
}

// bucketMs is the bucket length of a cap over w ms: 1 (exact) up to 1000 ms, else
// ceil(w/1000).
func bucketMs(w int64) int64 {
	if w <= secondWindow {
		return 1
	}
	return (w + secondWindow - 1) / secondWindow
}

// floorDiv is floor(a/b) for b > 0 (a may be negative).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// capList collects the caps of a request in order, a 1000 ms one included.
type capList struct {
	n int
	c [MaxCaps]Cap
}

// add appends c; what and k name it in errors ("LIMITS cap 2", "CAP 3").
func (l *capList) add(c Cap, what string, k int) error {
	for i := 0; i < l.n; i++ {
		if l.c[i].Window == c.Window {
			return argErr(capName(what, k), "a second cap over "+strconv.FormatInt(c.Window, 10)+
				" ms; give each window once (HARD n is the cap n per 1000 ms, GLOBAL gkey n the global one)")
		}
	}
	if l.n == MaxCaps {
		return argErr(capName(what, k), "at most "+strconv.Itoa(MaxCaps)+" caps per key (HARD, or GLOBAL's per-second limit, counts as one)")
	}
	l.c[l.n] = c
	l.n++
	return nil
}

// capName names cap k of what: "CAP 3" for the TIER form's clauses, "HARD", else
// "LIMITS cap 2".
func capName(what string, k int) string {
	switch what {
	case "CAP":
		return "CAP " + strconv.Itoa(k)
	case "HARD":
		return what
	}
	return capArg(what, k, "")
}

// split moves the list's 1000 ms cap into (has, limit) and the others into caps[:n].
func (l *capList) split(caps *[MaxCaps]Cap) (n int, has bool, limit int64) {
	for i := 0; i < l.n; i++ {
		if l.c[i].Window == secondWindow {
			has, limit = true, l.c[i].Limit
			continue
		}
		caps[n] = l.c[i]
		n++
	}
	return n, has, limit
}
