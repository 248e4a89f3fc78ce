use super::*;

#[test]
fn encodes_hpack_integers_as_rfc_7541_shows() {
    // C.1.1: 10 in a 5-bit prefix; C.1.2: 1337 in a 5-bit prefix.
    let mut out = Vec::new();
    integer(&mut out, 0, 5, 10);
    assert_eq!(out, [0x0a]);
    out.clear();
    integer(&mut out, 0, 5, 1337);
    assert_eq!(out, [0x1f, 0x9a, 0x0a]);
    // A 31 in a 4-bit prefix (content-type's static index).
    out.clear();
    integer(&mut out, 0, 4, 31);
    assert_eq!(out, [0x0f, 0x10]);
}

#[test]
fn cuts_padding_from_data() {
    assert_eq!(unpadded(0x8, &[2, b'a', b'b', 0, 0]).unwrap(), b"ab");
    assert_eq!(unpadded(0, &[2, 0]).unwrap(), [2, 0]);
    assert!(unpadded(0x8, &[9, 0]).is_err());
    assert!(unpadded(0x8, &[]).is_err());
}

#[test]
fn reads_a_frame_only_once_it_is_whole() {
    let mut out = Vec::new();
    frame(&mut out, 0, 0x1, 3 | 1 << 31, b"abc");
    for cut in 0..out.len() {
        assert!(next_frame(&out[..cut]).is_none(), "cut at {cut}");
    }
    out.push(9);
    let (f, used) = next_frame(&out).unwrap();
    // The reserved bit of the stream id is dropped.
    assert_eq!(
        (f.kind, f.flags, f.stream, f.payload),
        (0, 1, 3, &b"abc"[..])
    );
    assert_eq!(used, 12);
}
