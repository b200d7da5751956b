//! Fuzz target `stream`: see [`xbzrle_fuzz::stream`]. Without `--cfg fuzzing` it replays the
//! files given as arguments.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| xbzrle_fuzz::stream::check(data));

#[cfg(not(fuzzing))]
fn main() {
    xbzrle_fuzz::replay_main(xbzrle_fuzz::stream::check);
}
