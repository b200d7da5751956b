/*
 * Replaces QEMU's migration/xbzrle.c. The codec is libxbzrle's: its xbzrle_encode_buffer and
 * xbzrle_decode_buffer carry QEMU's names, signatures and return values, so this file defines
 * nothing. It declares both sides: QEMU's migration/xbzrle.h and libxbzrle's xbzrle.h declare
 * the same two functions, and a signature that drifted on either side is a compile error here.
 *
 * Part of the xbzrle project (not QEMU code). SPDX-License-Identifier: MIT OR Apache-2.0
 */
#include "qemu/osdep.h"
#include "migration/xbzrle.h"

/* The redeclaration is the check. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wredundant-decls"
#include <xbzrle.h>
#pragma GCC diagnostic pop
