//! Key → shard: FNV-1a of the key modulo the shard count. Stable across restarts for the same
//! `--shards`, which is all it needs while state is rebuilt from the WAL at boot.

pub fn shard_of(key: &[u8], shards: usize) -> usize {
    debug_assert!(shards > 0);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % shards as u64) as usize
}
