package wire

import (
	"errors"
	"math"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func argv(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, a := range s {
		out[i] = []byte(a)
	}
	return out
}

func TestParseMark(t *testing.T) {
	tests := []struct {
		name  string
		argv  [][]byte
		count int64
		err   string // "" = ok; "arity" = ErrWrongArity
	}{
		{"default count", argv("UNREAD.MARK", "k", "c"), 1, ""},
		{"explicit count", argv("UNREAD.MARK", "k", "c", "7"), 7, ""},
		{"max count", argv("UNREAD.MARK", "k", "c", "9007199254740991"), MaxMarkCount, ""},
		{"binary member", argv("UNREAD.MARK", "k", "\x00\xff", "2"), 2, ""},
		{"too few", argv("UNREAD.MARK", "k"), 0, "arity"},
		{"too many", argv("UNREAD.MARK", "k", "c", "1", "2"), 0, "arity"},
		{"zero", argv("UNREAD.MARK", "k", "c", "0"), 0, "count: must be a positive integer"},
		{"negative", argv("UNREAD.MARK", "k", "c", "-1"), 0, "count: must be a positive integer"},
		{"plus sign", argv("UNREAD.MARK", "k", "c", "+1"), 0, "count: must be a positive integer"},
		{"leading zero", argv("UNREAD.MARK", "k", "c", "01"), 0, "count: must be a positive integer"},
		{"empty", argv("UNREAD.MARK", "k", "c", ""), 0, "count: must be a positive integer"},
		{"float", argv("UNREAD.MARK", "k", "c", "1.5"), 0, "count: must be a positive integer"},
		{"space", argv("UNREAD.MARK", "k", "c", " 1"), 0, "count: must be a positive integer"},
		{"above max", argv("UNREAD.MARK", "k", "c", "9007199254740992"), 0, "count: must be at most 9007199254740991"},
		{"int64 overflow", argv("UNREAD.MARK", "k", "c", "99999999999999999999999"), 0, "count: must be at most 9007199254740991"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMark(tt.argv)
			switch tt.err {
			case "":
				require.NoError(t, err)
				require.Equal(t, tt.count, m.Count)
				require.Equal(t, tt.argv[1], m.Key)
				require.Equal(t, tt.argv[2], m.Conversation)
			case "arity":
				require.ErrorIs(t, err, ErrWrongArity)
			default:
				var ae *ArgError
				require.True(t, errors.As(err, &ae), "want *ArgError, got %v", err)
				require.Equal(t, "count", ae.Arg)
				require.EqualError(t, err, tt.err)
			}
		})
	}
}

func TestMaxMarkCountMessage(t *testing.T) {
	// The error text spells the bound out; keep it in step with the constant.
	_, err := ParseCount([]byte(strconv.FormatInt(MaxMarkCount+1, 10)))
	require.EqualError(t, err, "count: must be at most "+strconv.FormatInt(MaxMarkCount, 10))
	require.Equal(t, float64(MaxMarkCount), math.Nextafter(float64(MaxMarkCount+1), 0))
}

func TestParseMarkAllocs(t *testing.T) {
	a := argv("UNREAD.MARK", "user_id{1}", "conv", "12345")
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ParseMark(a); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs)
}

func TestScoreToCount(t *testing.T) {
	tests := []struct {
		in   float64
		want int64
	}{
		{0, 0},
		{1, 1},
		{3.9, 3},
		{-2.5, -2},
		{float64(MaxMarkCount), MaxMarkCount},
		{1e300, math.MaxInt64},
		{math.Inf(1), math.MaxInt64},
		{math.Inf(-1), math.MinInt64},
		{-1e300, math.MinInt64},
		{math.NaN(), 0},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, ScoreToCount(tt.in), "ScoreToCount(%v)", tt.in)
	}
}

func TestDecodeCounts(t *testing.T) {
	tests := []struct {
		name  string
		reply any
		want  int
		out   []int64
		err   string
	}{
		{"ok", []any{int64(3), int64(0), int64(7)}, 3, []int64{3, 0, 7}, ""},
		{"one", []any{int64(1)}, 1, []int64{1}, ""},
		{"short", []any{int64(1)}, 2, nil, "want 2 counts, got 1"},
		{"long", []any{int64(1), int64(2)}, 1, nil, "want 1 counts, got 2"},
		{"not array", int64(3), 1, nil, "want an array, got int64"},
		{"nil", nil, 1, nil, "want an array, got <nil>"},
		{"string element", []any{"3"}, 1, nil, "element 0: want an integer, got string"},
		{"nil element", []any{int64(1), nil}, 2, nil, "element 1: want an integer, got <nil>"},
		{"negative", []any{int64(-1)}, 1, nil, "element 0: want a count >= 0, got -1"},
		{"map (RESP3 misuse)", map[any]any{"a": int64(1)}, 1, nil, "want an array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := DecodeCounts(tt.reply, tt.want)
			if tt.err == "" {
				require.NoError(t, err)
				require.Equal(t, tt.out, out)
				return
			}
			require.ErrorContains(t, err, tt.err)
			require.Nil(t, out)
		})
	}
}

func FuzzParseCount(f *testing.F) {
	for _, s := range []string{"1", "0", "01", "-1", "+1", "9007199254740991", "9007199254740992", "", " 1", "1e3"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseCount(b)
		ref, rerr := strconv.ParseInt(string(b), 10, 64)
		canonical := rerr == nil && strconv.FormatInt(ref, 10) == string(b)
		wantOK := canonical && ref >= 1 && ref <= MaxMarkCount
		if wantOK {
			if err != nil || n != ref {
				t.Fatalf("ParseCount(%q) = %d, %v; want %d", b, n, err, ref)
			}
			return
		}
		if err == nil {
			t.Fatalf("ParseCount(%q) = %d, want an error", b, n)
		}
	})
}

func TestDecodeScore(t *testing.T) {
	tests := []struct {
		reply any
		want  float64
		err   string
	}{
		{float64(2.5), 2.5, ""},
		{"3", 3, ""},
		{"9007199254740991", MaxMarkCount, ""},
		{"inf", math.Inf(1), ""},
		{"-inf", math.Inf(-1), ""},
		{int64(4), 4, ""},
		{"x", 0, `want a score, got "x"`},
		{nil, 0, "want a score, got <nil>"},
		{[]any{"1"}, 0, "want a score, got []interface {}"},
	}
	for _, tt := range tests {
		got, err := DecodeScore(tt.reply)
		if tt.err != "" {
			require.EqualError(t, err, tt.err)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tt.want, got)
	}
}
