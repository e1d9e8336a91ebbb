//! Value helpers shared by several tables: null flags and rounded percentages.

use crate::rng::Rng;

/// Null probability of a nullable key, in 1/65536 units: 2949 / 65536 = 4.5%.
pub const NULL_PER_65536: u64 = 2949;

/// Null flags for up to `4 × N` nullable columns from `N` draws: lane `i` is bits
/// `16·(i mod 4)..16·(i mod 4) + 16` of draw `i / 4`, and its column is null when that lane is
/// below [`NULL_PER_65536`], so each column is null in about 4.5% of rows, independently.
#[derive(Clone, Copy, Debug)]
pub struct NullLanes<const N: usize>([u64; N]);

impl<const N: usize> NullLanes<N> {
    #[inline(always)]
    pub fn draw(r: &mut Rng) -> Self {
        NullLanes(std::array::from_fn(|_| r.next_u64()))
    }

    /// Whether the column of lane `lane` is present (not null).
    #[inline(always)]
    pub fn present(&self, lane: usize) -> bool {
        (self.0[lane / 4] >> ((lane % 4) * 16)) & 0xFFFF >= NULL_PER_65536
    }

    /// `value`, or `None` where lane `lane` makes its column null.
    #[inline(always)]
    pub fn keep<T>(&self, lane: usize, value: T) -> Option<T> {
        self.present(lane).then_some(value)
    }
}

/// `a × percent / 100`, rounded half up, for non-negative `a` and `percent`.
#[inline]
pub fn percent_of(a: i64, percent: i64) -> i64 {
    (a * percent + 50) / 100
}
