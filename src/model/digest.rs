//! Content digests as fixed 32-byte values; strings only at the edges.

use std::fmt;

/// A sha256 digest. The registry's filesystem layout only ever names sha256 blobs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    fn head(&self) -> u64 {
        let mut h = [0u8; 8];
        h.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(h)
    }
}

/// Byte order, as the derived one would be; but digests are uniformly random, so their first
/// eight bytes, compared as one integer, settle almost every comparison without a memcmp call
/// (binary searches over the blob list are the model's most frequent operation).
impl Ord for Digest {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.head()
            .cmp(&other.head())
            .then_with(|| self.0[8..].cmp(&other.0[8..]))
    }
}

impl PartialOrd for Digest {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn nibble(c: u8) -> Option<u8> {
    // The registry only writes lowercase hex; anything else is not a name it would use.
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl Digest {
    /// Parses 64 lowercase hex characters.
    pub fn from_hex(hex: &str) -> Option<Digest> {
        let b = hex.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Digest(out))
    }

    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Option<Digest> {
        Digest::from_hex(s.strip_prefix("sha256:")?)
    }

    /// The 64-character lowercase hex form.
    pub fn hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        s
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(d)?;
        Digest::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not sha256:<hex>")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "70abfedf4ca42f4c13bdb380327525727c03c8dac668bde9eb2b214d8b4de584";

    #[test]
    fn round_trip() {
        let d = Digest::parse(&format!("sha256:{H}")).unwrap();
        assert_eq!(d.hex(), H);
        assert_eq!(d.to_string(), format!("sha256:{H}"));
    }

    #[test]
    fn order_is_byte_order() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        for i in 0..32 {
            for (x, y) in [(1u8, 2u8), (2, 1), (7, 7), (0x80, 0x7f)] {
                a[i] = x;
                b[i] = y;
                assert_eq!(Digest(a).cmp(&Digest(b)), a.cmp(&b), "byte {i}");
                a[i] = 0;
                b[i] = 0;
            }
        }
    }

    #[test]
    fn rejects_bad_forms() {
        assert!(Digest::parse(H).is_none());
        assert!(Digest::parse(&format!("sha512:{H}")).is_none());
        assert!(Digest::parse(&format!("sha256:{}", H.to_uppercase())).is_none());
        assert!(Digest::parse(&format!("sha256:{}", &H[1..])).is_none());
        assert!(Digest::parse(&format!("sha256:{H}0")).is_none());
        assert!(Digest::parse("sha256:").is_none());
        assert!(Digest::from_hex(&"g".repeat(64)).is_none());
        // Multi-byte characters must not be mistaken for hex or panic on slicing.
        assert!(Digest::from_hex(&"é".repeat(32)).is_none());
    }
}
