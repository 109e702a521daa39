//! Attach/validate a region from arbitrary bytes: `parse_header` on the raw
//! bytes, then a real attach of a memfd holding them. Every input must end in
//! Ok or a typed error: no panic, no out-of-bounds access, no hang, no SIGBUS.
#![no_main]

use libfuzzer_sys::fuzz_target;
use numashm_region::{parse_header, Region};
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes choose the file length the header is checked against.
    let (len_bytes, body) = data.split_at(data.len().min(8));
    let mut l = [0u8; 8];
    l[..len_bytes.len()].copy_from_slice(len_bytes);
    let claimed_len = u64::from_le_bytes(l) % (1 << 24);
    let _ = parse_header(body, claimed_len);

    // A real attach over a memfd with exactly these bytes (capped at 1 MiB).
    let body = &body[..body.len().min(1 << 20)];
    let Ok(fd) = rustix::fs::memfd_create("fuzz", rustix::fs::MemfdFlags::CLOEXEC) else { return };
    let mut file = std::fs::File::from(fd);
    if file.write_all(body).is_err() {
        return;
    }
    if let Ok(region) = Region::attach_fd(file.into()) {
        // Whatever attached must be usable within its bounds.
        let mut b = [0u8; 1];
        let _ = region.read_at(region.len() - 1, &mut b);
        let _ = region.check_and_remap();
        let _ = region.header_info();
    }
});
