//! Looking up keys asked in ascending order by walking a sorted map beside them: one
//! step per entry instead of a B-tree descent (a string compare per level) per key,
//! which showed in every reconcile and status round at 10k objects.
use std::{borrow::Borrow, iter::Peekable};

/// The entries of a key-ordered iterator, found by keys asked in ascending order.
pub struct Walk<I: Iterator>(Peekable<I>);

impl<K, V, I: Iterator<Item = (K, V)>> Walk<I> {
    pub fn new(entries: impl IntoIterator<IntoIter = I>) -> Self {
        Walk(entries.into_iter().peekable())
    }

    /// The value for `key`. Keys must be asked in ascending order (they may skip):
    /// entries before `key` are passed for good.
    pub fn at<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        while self.0.next_if(|(k, _)| k.borrow() < key).is_some() {}
        self.0.next_if(|(k, _)| k.borrow() == key).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn finds_ascending_keys_and_skips_what_was_not_asked() {
        let map: BTreeMap<u32, &str> = [(1, "a"), (3, "c"), (5, "e"), (7, "g")].into();
        let mut walk = Walk::new(map.iter());
        assert_eq!(walk.at(&0), None);
        assert_eq!(walk.at(&3), Some(&"c"));
        assert_eq!(walk.at(&4), None);
        // 5 was never asked: passed over on the way to 7.
        assert_eq!(walk.at(&7), Some(&"g"));
        assert_eq!(walk.at(&9), None);
    }
}
