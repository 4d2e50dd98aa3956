//! What the permessage-deflate targets share.

use unisock::DeflateConfig;

/// A config from two bytes: both context-takeover flags and both window sizes (9 to 15).
pub fn config(flags: u8, bits: u8) -> DeflateConfig {
    DeflateConfig::default()
        .server_no_context_takeover(flags & 1 != 0)
        .client_no_context_takeover(flags & 2 != 0)
        .server_max_window_bits(9 + (bits & 7))
        .client_max_window_bits(9 + ((bits >> 4) & 7))
}
