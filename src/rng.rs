//! The one pseudo-random generator: xorshift64* (Vigna 2016). Tiny and
//! deterministic, for what only has to avoid lock-step (NDP's advertisement
//! jitter) and for tests and fuzz barrages that must replay exactly. Not for
//! anything an attacker must not predict.
#![forbid(unsafe_code)]

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Zero is xorshift's one fixed point.
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64() as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn replays_and_spreads() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..64).map(|_| a.next_u64()).collect();
        assert!(xs.iter().all(|&x| x == b.next_u64()));
        let mut seen = [false; 8];
        for _ in 0..256 {
            seen[a.below(8)] = true;
        }
        assert!(seen.iter().all(|&s| s), "below(8) misses a value");
        assert_ne!(Rng::new(0).next_u64(), 0);
    }
}
