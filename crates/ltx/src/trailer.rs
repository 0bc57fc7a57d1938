//! The 16-byte LTX trailer (`docs/ltx-and-replica-format.md#trailer`): the post-apply database
//! checksum and the file checksum, with the rules that tie them to the header's NoChecksum flag.

use crate::checksum::Checksum;
use crate::error::{ChecksumRule, Error, Result};
use crate::header::{Header, be_u64};

/// Size of the trailer, in bytes.
pub(crate) const TRAILER_SIZE: usize = 16;

/// The last 16 bytes of an LTX file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Trailer {
    /// Database checksum after applying the file (zero for NoChecksum files).
    pub post_apply_checksum: Checksum,
    /// CRC-64/GO-ISO of the file (`docs/ltx-and-replica-format.md#file-checksum`) with bit 63 set.
    pub file_checksum: Checksum,
}

impl Trailer {
    pub fn to_bytes(&self) -> [u8; TRAILER_SIZE] {
        let mut b = [0u8; TRAILER_SIZE];
        b[..8].copy_from_slice(&self.post_apply_checksum.0.to_be_bytes());
        b[8..].copy_from_slice(&self.file_checksum.0.to_be_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; TRAILER_SIZE]) -> Trailer {
        Trailer {
            post_apply_checksum: Checksum(be_u64(b, 0)),
            file_checksum: Checksum(be_u64(b, 8)),
        }
    }

    /// The trailer rules: NoChecksum ⇒ post-apply zero; otherwise post-apply present with
    /// bit 63; the file checksum present with bit 63.
    pub fn validate(&self, header: &Header) -> Result<()> {
        validate_post_apply(header, self.post_apply_checksum)?;
        if !self.file_checksum.has_flag() {
            return Err(Error::BadFileChecksumFormat(self.file_checksum));
        }
        Ok(())
    }
}

pub(crate) fn validate_post_apply(header: &Header, post: Checksum) -> Result<()> {
    let rule = if header.no_checksum() {
        (!post.is_zero()).then_some(ChecksumRule::NotAllowed)
    } else if post.is_zero() {
        Some(ChecksumRule::Required)
    } else if !post.has_flag() {
        Some(ChecksumRule::MissingFlag)
    } else {
        None
    };
    match rule {
        Some(rule) => Err(Error::BadPostApplyChecksum { value: post, rule }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TxId;

    #[test]
    fn rules() {
        let nochk = Header::new(4096, 1, TxId(1), TxId(1), 0);
        let mut chk = nochk;
        chk.flags = 0;
        let t = |post: u64, file: u64| Trailer {
            post_apply_checksum: Checksum(post),
            file_checksum: Checksum(file),
        };
        let f = 1u64 << 63;
        t(0, f | 7).validate(&nochk).unwrap();
        t(f | 3, f | 7).validate(&chk).unwrap();
        assert!(matches!(
            t(f, f).validate(&nochk),
            Err(Error::BadPostApplyChecksum {
                rule: ChecksumRule::NotAllowed,
                ..
            })
        ));
        assert!(matches!(
            t(0, f).validate(&chk),
            Err(Error::BadPostApplyChecksum {
                rule: ChecksumRule::Required,
                ..
            })
        ));
        assert!(matches!(
            t(3, f).validate(&chk),
            Err(Error::BadPostApplyChecksum {
                rule: ChecksumRule::MissingFlag,
                ..
            })
        ));
        assert!(matches!(
            t(0, 7).validate(&nochk),
            Err(Error::BadFileChecksumFormat(_))
        ));
        assert!(matches!(
            t(0, 0).validate(&nochk),
            Err(Error::BadFileChecksumFormat(_))
        ));
        let x = t(f | 1, f | 2);
        assert_eq!(Trailer::from_bytes(&x.to_bytes()), x);
    }
}
