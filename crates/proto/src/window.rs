//! The replay window (SPEC §4.2): sequence numbers up to 256 behind the highest seen are
//! accepted once each, in any order; older ones are refused, and so is a jump of more than
//! [`ReplayWindow::MAX_JUMP`] ahead, which no honest sender makes. The seen set is a 256-bit
//! bitmap, well inside the spec's bound of 1024 entries, and 40 bytes per connection.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowError {
    /// Sequence numbers start at 1.
    Zero,
    /// Seen before.
    Replayed,
    /// More than the window behind the highest seen.
    BelowWindow,
    /// Too far ahead of the highest seen.
    Jump,
}

#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    /// The highest sequence accepted; 0 before the first.
    highest: u64,
    /// Bit k set: `highest - k` was accepted.
    seen: [u64; 4],
}

impl ReplayWindow {
    pub const SIZE: u64 = 256;
    pub const MAX_JUMP: u64 = 1024;

    pub fn new() -> Self {
        Self::default()
    }

    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Checks `seq` and records it if it is accepted.
    pub fn accept(&mut self, seq: u64) -> Result<(), WindowError> {
        if seq == 0 {
            return Err(WindowError::Zero);
        }
        if seq > self.highest {
            if seq - self.highest > Self::MAX_JUMP {
                return Err(WindowError::Jump);
            }
            self.shift(seq - self.highest);
            self.highest = seq;
            self.seen[0] |= 1;
            return Ok(());
        }
        let behind = self.highest - seq;
        if behind >= Self::SIZE {
            return Err(WindowError::BelowWindow);
        }
        let (word, bit) = ((behind / 64) as usize, behind % 64);
        if self.seen[word] & (1 << bit) != 0 {
            return Err(WindowError::Replayed);
        }
        self.seen[word] |= 1 << bit;
        Ok(())
    }

    /// Moves every recorded bit `by` places further behind.
    fn shift(&mut self, by: u64) {
        if by >= Self::SIZE {
            self.seen = [0; 4];
            return;
        }
        let words = (by / 64) as usize;
        let bits = by % 64;
        let mut out = [0u64; 4];
        for (i, slot) in out.iter_mut().enumerate() {
            let Some(src) = i.checked_sub(words) else { continue };
            let mut v = self.seen[src] << bits;
            if bits > 0 && src > 0 {
                v |= self.seen[src - 1] >> (64 - bits);
            }
            *slot = v;
        }
        self.seen = out;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// The reference model: every accepted number remembered in a set.
    #[derive(Default)]
    struct Model {
        highest: u64,
        accepted: BTreeSet<u64>,
    }

    impl Model {
        fn accept(&mut self, seq: u64) -> Result<(), WindowError> {
            if seq == 0 {
                return Err(WindowError::Zero);
            }
            if seq > self.highest && seq - self.highest > ReplayWindow::MAX_JUMP {
                return Err(WindowError::Jump);
            }
            if seq <= self.highest && self.highest - seq >= ReplayWindow::SIZE {
                return Err(WindowError::BelowWindow);
            }
            if !self.accepted.insert(seq) {
                return Err(WindowError::Replayed);
            }
            self.highest = self.highest.max(seq);
            Ok(())
        }
    }

    #[test]
    fn in_order_reordered_replayed_and_stale_sequences() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.accept(1), Ok(()));
        assert_eq!(w.accept(3), Ok(()));
        assert_eq!(w.accept(2), Ok(()), "reorder inside the window is accepted once");
        assert_eq!(w.accept(2), Err(WindowError::Replayed));
        assert_eq!(w.accept(1), Err(WindowError::Replayed));
        assert_eq!(w.accept(300), Ok(()));
        assert_eq!(w.accept(45), Ok(()), "255 behind the highest is inside the window");
        assert_eq!(w.accept(45), Err(WindowError::Replayed));
        assert_eq!(w.accept(44), Err(WindowError::BelowWindow), "256 behind is outside");
        assert_eq!(w.accept(10), Err(WindowError::BelowWindow));
        assert_eq!(w.accept(300 + 1025), Err(WindowError::Jump));
        assert_eq!(w.accept(0), Err(WindowError::Zero));
    }

    #[test]
    fn numbers_near_u64_max_neither_overflow_nor_repeat() {
        let mut w = ReplayWindow { highest: u64::MAX - 10, seen: [1, 0, 0, 0] };
        assert_eq!(w.accept(u64::MAX), Ok(()));
        assert_eq!(w.accept(u64::MAX), Err(WindowError::Replayed));
        assert_eq!(w.accept(u64::MAX - 10), Err(WindowError::Replayed));
        assert_eq!(w.accept(u64::MAX - 5), Ok(()));
        assert_eq!(w.accept(u64::MAX - 256), Err(WindowError::BelowWindow));
    }

    fn op(highest_hint: u64) -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => 0u64..2_000,
            1 => Just(0u64),
            1 => (u64::MAX - 2_000)..=u64::MAX,
            1 => Just(highest_hint),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn the_window_agrees_with_the_reference_model(
            start in prop_oneof![Just(0u64), (u64::MAX - 3_000)..(u64::MAX - 1_000)],
            steps in proptest::collection::vec((0u64..1_100, any::<bool>(), op(0)), 1..400),
        ) {
            let mut w = ReplayWindow::new();
            let mut m = Model::default();
            // Start both at the same high point when the case begins near u64::MAX.
            if start > 0 {
                w.highest = start;
                m.highest = start;
                // Everything at or below `start` counts as seen by neither: the window holds
                // no bits and the model no entries, and both refuse below the window alike.
            }
            for (delta, backwards, raw) in steps {
                let seq = if raw == 0 || raw > 2_000 { raw } else if backwards {
                    m.highest.saturating_sub(delta)
                } else {
                    m.highest.saturating_add(delta)
                };
                prop_assert_eq!(w.accept(seq), m.accept(seq), "seq {} highest {}", seq, m.highest);
                prop_assert_eq!(w.highest(), m.highest);
            }
        }
    }
}
