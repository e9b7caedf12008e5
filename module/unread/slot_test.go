package unread

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCRC16CheckValue(t *testing.T) {
	// The catalogued check value of CRC-16/XMODEM, also given by the cluster spec.
	require.Equal(t, uint16(0x31C3), crc16("123456789"))
	require.Equal(t, uint16(0), crc16(""))
}

// Values printed by CLUSTER KEYSLOT on redis-server 7.0.15.
func TestSlotKnownValues(t *testing.T) {
	tests := []struct {
		key  string
		slot int
	}{
		{"123456789", 12739},
		{"foo", 12182},
		{"bar", 5061},
		{"hello", 866},
		{"user_id{1234}", 6025},
		{"user_id{0}", 13907},
		{"user_id{9999}", 7389},
		{"user_id{}", 1619}, // empty tag: the whole key is hashed
		{"{}", 15257},
		{"{}x", 10595},
		{"a{b}c", 3300},
		{"{user1000}.following", 3443},
		{"user_id{{x}", 11068},  // tag is "{x"
		{"user_id{a}b}", 15495}, // tag ends at the first '}'
		{"", 0},
		{"}{", 12793},
		{"x{", 3596},
		{"{a", 10276},
		{"\xff\x00\x80", 7915},
	}
	for _, tt := range tests {
		require.Equal(t, tt.slot, Slot(tt.key), "Slot(%q)", tt.key)
	}
}

func TestSlotHashTag(t *testing.T) {
	for i := range 1000 {
		id := strconv.Itoa(i)
		s := Slot(Key(id))
		require.Equal(t, s, Slot(id), "user_id{%s} must hash like %s", id, id)
		require.Equal(t, s, Slot("conversations{"+id+"}"))
		require.GreaterOrEqual(t, s, 0)
		require.Less(t, s, SlotCount)
	}
}

func TestKey(t *testing.T) {
	require.Equal(t, "user_id{1234}", Key("1234"))
	require.Equal(t, "user_id{}", Key(""))
}

func TestSlotAllocs(t *testing.T) {
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = Slot("user_id{12345}") }))
}
