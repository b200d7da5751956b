//! temporary
mod common;
#[test]
fn reference_seed_pairs() {
    common::check_kernel_on_seed_pairs(xbzrle::Kernel::Reference);
}
