//! The `xbzrle` command line tool.

fn main() {}
