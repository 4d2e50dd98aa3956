//! In the browser the browser compresses: the protocol core has no codec there. This
//! stand-in has the native codec's interface and no values, so the code that uses it
//! compiles on both targets and is dead in the browser.

use super::DeflateParams;
use crate::protocol::{ProtocolError, Role};
use crate::DeflateConfig;

/// No codec can exist in the browser.
#[derive(Debug)]
pub(crate) enum Codec {}

impl Codec {
    pub(crate) fn new(_: Role, _: &DeflateParams, _: &DeflateConfig) -> Option<Self> {
        None
    }

    pub(crate) fn compress(&mut self, _: &[u8]) -> Option<Vec<u8>> {
        match *self {}
    }

    pub(crate) fn decompress(
        &mut self,
        _: &[u8],
        _: &mut Vec<u8>,
        _: usize,
        _: &mut dyn FnMut(usize) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        match *self {}
    }

    pub(crate) fn finish_message(
        &mut self,
        _: &mut Vec<u8>,
        _: usize,
        _: &mut dyn FnMut(usize) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        match *self {}
    }
}
