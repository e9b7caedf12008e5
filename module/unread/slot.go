package unread

// SlotCount is the number of hash slots of a Redis Cluster.
const SlotCount = 16384

// Key returns the key of a user's unread-conversation set: user_id{ID}. The braces
// make the ID the key's hash tag, so every key derived from a user lands in the slot
// of that user's ID. It is the one place the naming rule lives.
func Key(userID string) string {
	return "user_id{" + userID + "}"
}

// Slot returns the Redis Cluster hash slot of key: CRC16 (XMODEM) of the hash tag
// mod 16384. The hash tag is the part between the first '{' and the first '}' after
// it, when that part is not empty; otherwise the whole key is hashed. This is
// Redis's keyHashSlot, written again because go-redis keeps its copy internal.
func Slot(key string) int {
	if open := indexByte(key, '{', 0); open >= 0 {
		if end := indexByte(key, '}', open+1); end > open+1 {
			key = key[open+1 : end]
		}
	}
	return int(crc16(key) & (SlotCount - 1))
}

func indexByte(s string, c byte, from int) int {
	for i := from; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0, no reflection), the
// variant Redis Cluster uses. Bitwise rather than table-driven: no package state, and
// a key is a few dozen bytes next to a network round trip.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
