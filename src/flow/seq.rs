//! TCP sequence numbers: 32-bit, wrapping, compared by the sign of their
//! difference (RFC 793 section 3.3), so `<` stays right across the wrap as
//! long as the two numbers are less than 2^31 apart.

use std::cmp::Ordering;
use std::ops::{Add, AddAssign, Sub};

/// A position in a TCP byte stream's sequence space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Seq(pub u32);

impl Add<u32> for Seq {
    type Output = Seq;
    fn add(self, n: u32) -> Seq {
        Seq(self.0.wrapping_add(n))
    }
}

impl AddAssign<u32> for Seq {
    fn add_assign(&mut self, n: u32) {
        self.0 = self.0.wrapping_add(n);
    }
}

/// How far `self` is ahead of `earlier`, modulo 2^32 (a length in bytes
/// when `earlier <= self`).
impl Sub for Seq {
    type Output = u32;
    fn sub(self, earlier: Seq) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }
}

impl PartialOrd for Seq {
    fn partial_cmp(&self, other: &Seq) -> Option<Ordering> {
        Some((self.0.wrapping_sub(other.0) as i32).cmp(&0))
    }
}

#[cfg(test)]
mod tests {
    use super::Seq;
    use std::cmp::Ordering;

    #[test]
    fn compares_across_the_wrap() {
        let before = Seq(u32::MAX - 10);
        let after = before + 20;
        assert_eq!(after, Seq(9));
        assert_eq!(before.partial_cmp(&after), Some(Ordering::Less));
        assert_eq!(after.partial_cmp(&before), Some(Ordering::Greater));
        assert!(before < after);
        assert!(after >= before);
        assert_eq!(after - before, 20);
        // The difference taken the other way wraps: never a small number.
        assert_eq!(before - after, u32::MAX - 19);
    }

    #[test]
    fn ordinary_numbers_compare_as_integers() {
        assert!(Seq(1) < Seq(2));
        assert!(Seq(0x7fff_ffff) > Seq(0));
        // Half the space away is "behind": the wrap rule's edge.
        assert!(Seq(0x8000_0000) < Seq(0));
        let mut s = Seq(u32::MAX);
        s += 1;
        assert_eq!(s, Seq(0));
    }
}
