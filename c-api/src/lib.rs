//! C ABI for the xbzrle codec and policy layer.
