//! An ownership descriptor from arbitrary bytes, read as a pool's reader reads
//! one (`Peer::descriptor`, `numashm inspect`, a gated rendezvous's admission
//! check): the header's descriptor offset word and the descriptor page come
//! from the input. Every call must end in a value or a typed error: no panic,
//! no out-of-bounds access, no hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numashm_ownership::{Descriptor, DESCRIPTOR_LEN};
use numashm_region::RegionOptions;

fuzz_target!(|data: &[u8]| {
    let Ok(region) = RegionOptions::new(64 << 10).create_anonymous("fuzz-desc") else { return };
    // The first 8 bytes: header bytes 96..104 (where the descriptor is), as
    // any writer of the header could leave them; the rest: the descriptor page.
    let (at, body) = data.split_at(data.len().min(8));
    let mut w = [0u8; 8];
    w[..at.len()].copy_from_slice(at);
    let offset = u64::from_le_bytes(w);
    // A page that holds the descriptor when the offset names it (an offset
    // elsewhere reads zeroes or whatever the input put at the data start).
    let page = 16 << 10;
    let body = &body[..body.len().min(DESCRIPTOR_LEN)];
    if region.write_at(page, body).is_err() || region.write_at(region.data_offset(), body).is_err() {
        return;
    }
    // SAFETY of the test, not of the code: header bytes are written through the
    // memfd, as another process would (write_at refuses the header).
    let _ = rustix::io::pwrite(std::os::fd::AsFd::as_fd(&region), &(offset % (1 << 20)).to_le_bytes(), 96);
    if let Ok(d) = Descriptor::open(&region) {
        let _ = d.owner();
        let _ = d.owner_alive();
        let me = std::process::id();
        let _ = d.get_mapping(me);
        let token = u64::from_le_bytes(w).rotate_left(17) | 1;
        let _ = d.redeem_capability(token, me);
        let _ = d.validate();
    }
});
