package rm

/*
#include <stdlib.h>
#include "cshim.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// AddACLCategory creates the ACL category name (ACL CAT name, +@name, -@name) during
// OnLoad, before the commands that name it in ACLCategories are registered. It
// reports false, and no error, on a server without RedisModule_AddACLCategory
// (before Redis 7.4): the commands then keep only the server's own categories.
func (c Ctx) AddACLCategory(name string) (bool, error) {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	switch rc := C.cshim_add_acl_category(c.p, cs); rc {
	case 0:
		return true, nil
	case C.CSHIM_NOAPI:
		return false, nil
	default:
		return false, fmt.Errorf("ACL category %q: RedisModule_AddACLCategory refused it", name)
	}
}
