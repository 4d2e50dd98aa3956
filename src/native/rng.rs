//! Randomness for mask keys and handshake keys: the OS CSPRNG (getrandom), batched so a
//! mask key costs no system call on the hot path.

use std::cell::RefCell;

const POOL: usize = 512;

thread_local! {
    static BYTES: RefCell<([u8; POOL], usize)> = const { RefCell::new(([0; POOL], POOL)) };
}

/// Fills `out` with random bytes from the thread's pool, refilling it from the OS as needed.
pub(crate) fn fill(out: &mut [u8]) {
    BYTES.with(|cell| {
        let mut pool = cell.borrow_mut();
        for byte in out.iter_mut() {
            if pool.1 >= POOL {
                if let Err(e) = getrandom::fill(&mut pool.0) {
                    // Never seen on supported platforms; keep going with the old pool
                    // perturbed rather than panic on the send path.
                    tracing::error!("getrandom failed: {e}");
                    pool.0.rotate_left(1);
                }
                pool.1 = 0;
            }
            let (bytes, idx) = &mut *pool;
            *byte = bytes.get(*idx).copied().unwrap_or_default();
            *idx += 1;
        }
    });
}

/// A fresh 4-byte masking key (RFC 6455 §5.3).
pub(crate) fn mask_key() -> [u8; 4] {
    let mut key = [0; 4];
    fill(&mut key);
    key
}

/// A random number in `[0, 1)` (for reconnect jitter).
pub(crate) fn unit_f64() -> f64 {
    let mut bytes = [0; 8];
    fill(&mut bytes);
    // 53 random bits: every value is exact in an f64.
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_differ() {
        let keys: std::collections::HashSet<[u8; 4]> =
            (0..1000).map(|_| super::mask_key()).collect();
        assert!(keys.len() > 990, "only {} distinct keys", keys.len());
    }
}
