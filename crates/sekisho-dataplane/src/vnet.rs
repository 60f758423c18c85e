//! The virtio-net header (`struct virtio_net_hdr`, 10 bytes) that `PACKET_VNET_HDR` puts
//! before every frame read from and written to a port socket. It carries what the
//! sending host left for offload: a checksum not yet computed (`NEEDS_CSUM`, with where it
//! starts and where it goes) and a GSO super-frame (TCP or UDP payload larger than the MTU,
//! with the segment size). The data plane forwards header and frame unchanged, so the
//! egress side finishes the checksum and splits the super-frame as the kernel would have.

use sekisho_engine::{FrameMeta, Gso};

/// Bytes of the header before each frame.
pub const LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the transport checksum is still to be computed.
pub const F_NEEDS_CSUM: u8 = 1;

/// The header's fields (host byte order, as the kernel writes it for AF_PACKET).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*` (0: not a super-frame).
    pub gso_type: u8,
    /// Length of the headers before the payload, for GSO.
    pub hdr_len: u16,
    /// Segment size, for GSO.
    pub gso_size: u16,
    /// Where the checksummed region starts, for `NEEDS_CSUM`.
    pub csum_start: u16,
    /// Where within it the checksum goes.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Splits `data` into its header and the frame after it; `None` when shorter than
    /// the header.
    pub fn split(data: &[u8]) -> Option<(VnetHdr, &[u8])> {
        let (h, frame) = data.split_first_chunk::<LEN>()?;
        let u16_at = |i: usize| u16::from_ne_bytes([h[i], h[i + 1]]);
        Some((
            VnetHdr {
                flags: h[0],
                gso_type: h[1],
                hdr_len: u16_at(2),
                gso_size: u16_at(4),
                csum_start: u16_at(6),
                csum_offset: u16_at(8),
            },
            frame,
        ))
    }

    /// True when the transport checksum was left for offload.
    pub fn checksum_partial(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    /// True for a GSO super-frame.
    pub fn is_gso(&self) -> bool {
        self.gso_type & 0x7f != 0
    }

    /// What the engine checks of the header: the checksum left to complete and where it
    /// goes, and the segmentation asked for (the ECN bit aside).
    pub fn meta(&self) -> FrameMeta {
        let partial = self.checksum_partial();
        FrameMeta {
            checksum_partial: partial,
            checksum_at: partial.then_some((self.csum_start, self.csum_offset)),
            gso: match self.gso_type & 0x7f {
                GSO_NONE => Gso::None,
                GSO_TCPV4 => Gso::TcpV4,
                GSO_TCPV6 => Gso::TcpV6,
                GSO_UDP_L4 => Gso::Udp,
                _ => Gso::Other,
            },
        }
    }
}

/// `VIRTIO_NET_HDR_GSO_*` kinds.
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_header_and_frame() {
        let mut data = vec![1u8, 1];
        for v in [54u16, 1448, 34, 16] {
            data.extend_from_slice(&v.to_ne_bytes());
        }
        data.extend_from_slice(b"frame");
        let (h, frame) = VnetHdr::split(&data).unwrap();
        assert_eq!(
            h,
            VnetHdr { flags: 1, gso_type: 1, hdr_len: 54, gso_size: 1448, csum_start: 34, csum_offset: 16 }
        );
        assert!(h.checksum_partial() && h.is_gso());
        assert_eq!(
            h.meta(),
            FrameMeta { checksum_partial: true, checksum_at: Some((34, 16)), gso: Gso::TcpV4 }
        );
        assert_eq!(frame, b"frame");
        assert!(VnetHdr::split(&data[..9]).is_none());
    }
}
