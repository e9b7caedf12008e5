package rm

import "bytes"

// positions evaluates the key spec over a command's arguments (argv[0] is the
// command name) the way Redis does (db.c getKeysUsingKeySpecs): the begin search
// gives the first key, the range gives the last one and the step. It returns
// first > last when the spec finds no key.
func (ks *KeySpec) positions(argv [][]byte) (first, last, step int) {
	argc := len(argv)
	if ks.Keyword == "" {
		first = ks.Index
	} else {
		first = -1
		start, end, dir := ks.StartFrom, argc, 1
		if start < 0 { // a negative start searches backwards from the end
			start, end, dir = argc+start, 0, -1
		}
		for i := start; i != end && i >= 1 && i < argc; i += dir {
			if bytes.EqualFold(argv[i], []byte(ks.Keyword)) {
				first = i + 1
				break
			}
		}
		if first < 0 {
			return 1, 0, 1
		}
	}
	step = max(ks.KeyStep, 1)
	switch {
	case ks.LastKey >= 0:
		last = first + ks.LastKey
	default:
		last = argc + ks.LastKey // -1: the last argument
		if ks.Limit > 1 {
			last = first + ((last-first+1)/ks.Limit - 1)
		}
	}
	if last >= argc {
		last = argc - 1
	}
	return first, last, step
}
