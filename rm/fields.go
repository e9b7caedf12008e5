package rm

/*
#cgo noescape cshim_reply_mixed_fields
#cgo nocallback cshim_reply_mixed_fields
#include "cshim.h"
*/
import "C"

import "unsafe"

// Field kinds of ReplyMixedFields.
const (
	FieldInt  = C.CSHIM_FIELD_INT
	FieldBulk = C.CSHIM_FIELD_BULK
	FieldNull = C.CSHIM_FIELD_NULL
)

// BulkRef encodes a bulk field of ReplyMixedFields: length n at offset off of strs.
func BulkRef(off, n int) int64 { return int64(off)<<32 | int64(n) }

// ReplyMixedFields replies with fields named by f whose kinds[i] is FieldInt (vals[i]),
// FieldBulk (vals[i] = BulkRef into strs) or FieldNull, in one crossing: a map under
// RESP3, an array of the values under RESP2. All slices have f.Len() entries.
func (c Ctx) ReplyMixedFields(f *Fields, kinds []byte, vals []int64, strs []byte) {
	if len(vals) != f.n || len(kinds) != f.n || f.n == 0 {
		c.ReplyError("ERR internal error: reply shape mismatch")
		return
	}
	var sp *C.char
	if len(strs) > 0 {
		sp = (*C.char)(unsafe.Pointer(&strs[0]))
	}
	C.cshim_reply_mixed_fields(c.p, f.names, (*C.uchar)(unsafe.Pointer(&kinds[0])),
		(*C.int64_t)(unsafe.Pointer(&vals[0])), sp, C.int(f.n))
}
