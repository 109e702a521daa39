//! Helpers shared by the integration tests.
#![allow(dead_code)]

/// A 128-byte-aligned heap buffer standing in for a shared mapping (so the
/// `SharedMemory` versions also run under miri).
pub struct AlignedBuf {
    lines: Vec<Line>,
}

#[repr(C, align(128))]
#[derive(Clone, Copy)]
struct Line([u8; 128]);

impl AlignedBuf {
    pub fn new(bytes: usize) -> Self {
        AlignedBuf { lines: vec![Line([0; 128]); bytes.div_ceil(128)] }
    }
    pub fn len(&self) -> usize {
        self.lines.len() * 128
    }
    pub fn ptr(&mut self) -> *mut u8 {
        self.lines.as_mut_ptr().cast()
    }
}

/// Scale a count for miri.
pub fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        (n / 1000).clamp(20, 200)
    } else {
        n
    }
}
