//! The sender on rust-vmm guest memory: pages of a `GuestMemoryMmap` sent straight from
//! their `VolatileSlice`s, as a Rust VMM (Cloud Hypervisor, Firecracker) would, give the
//! same records as the same bytes given as a slice, and rebuild the guest on a receiver.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use xbzrle_policy::{Action, Receiver, Sender, SenderConfig};
use xbzrle_workloads::SplitMix64;

const PAGE: usize = 4096;
const PAGES: usize = 64;

#[test]
fn guest_pages_are_sent_from_their_volatile_slices() {
    let guest = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), PAGES * PAGE)])
        .expect("guest memory");
    let mut rng = SplitMix64::new(7);
    let mut image = vec![0u8; PAGES * PAGE];
    rng.fill(&mut image[PAGE..]); // page 0 stays zero
    guest.write_slice(&image, GuestAddress(0)).expect("write");
    let config = SenderConfig::default().with_cache_bytes(16 * PAGE as u64);
    let (sender, reference) = (
        Sender::new(config.clone()).unwrap(),
        Sender::new(config).unwrap(),
    );
    let receiver = Receiver::new(PAGE).unwrap();
    let mut destination = vec![0u8; PAGES * PAGE];
    let (mut out, mut expected_out) = (vec![0; sender.max_record_len()], vec![0; PAGE + 64]);
    let mut actions = Vec::new();
    for pass in 0..4 {
        sender.start_pass();
        reference.start_pass();
        for p in 0..PAGES {
            if pass > 0 && p % 3 == 0 {
                let at = p * PAGE + rng.below(PAGE as u64) as usize;
                guest
                    .write_obj(rng.next_u64() as u8, GuestAddress(at as u64))
                    .unwrap();
            }
            let slice = guest
                .get_slice(GuestAddress((p * PAGE) as u64), PAGE)
                .unwrap();
            let sent = sender.save_page(p as u64, &slice, &mut out).unwrap();
            guest
                .read_slice(
                    &mut image[p * PAGE..][..PAGE],
                    GuestAddress((p * PAGE) as u64),
                )
                .unwrap();
            let expected = reference
                .save_page(p as u64, &image[p * PAGE..][..PAGE], &mut expected_out)
                .unwrap();
            assert_eq!(sent, expected, "pass {pass} page {p}");
            assert_eq!(out[..sent.record_len], expected_out[..expected.record_len]);
            if sent.record_len > 0 {
                receiver
                    .apply_record(&out[..sent.record_len], &mut destination)
                    .unwrap();
            }
            actions.push(sent.action);
        }
    }
    assert!(destination == image, "destination differs from the guest");
    for action in [Action::Zero, Action::Xbzrle, Action::Skipped] {
        assert!(actions.contains(&action), "never {action:?}");
    }
}
