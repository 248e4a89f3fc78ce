//! Header blocks: a request's decoded with `loona-hpack` (Huffman, the static and the
//! dynamic table) and checked as RFC 9113 §8 asks; a response's encoded by hand, every
//! field a literal that is never indexed, so this side keeps no dynamic table.
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode, Uri};

/// Why a header block was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The block does not decode: the connection's HPACK state is lost.
    Compression,
    /// The request is malformed; the stream is reset and the connection goes on.
    Malformed(&'static str),
    /// The decoded fields exceed the header list limit.
    TooLarge,
}

/// What the callback collects; the first fault is kept and later fields ignored, but
/// the block is still decoded whole so the dynamic table stays in step with the peer.
#[derive(Default)]
struct Fields {
    method: Option<Method>,
    scheme: Option<String>,
    authority: Option<String>,
    path: Option<String>,
    headers: HeaderMap,
    regular_seen: bool,
    size: usize,
    fault: Option<BlockError>,
}

/// Connection-specific fields HTTP/2 forbids (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

impl Fields {
    fn fail(&mut self, e: BlockError) {
        if self.fault.is_none() {
            self.fault = Some(e);
        }
    }

    fn field(&mut self, name: &[u8], value: &[u8], max_list: usize) {
        self.size += name.len() + value.len() + 32;
        if self.size > max_list {
            self.fail(BlockError::TooLarge);
        }
        if self.fault.is_some() {
            return;
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if self.regular_seen {
                return self.fail(BlockError::Malformed("pseudo-header after a regular field"));
            }
            let Ok(text) = std::str::from_utf8(value) else {
                return self.fail(BlockError::Malformed("pseudo-header value is not UTF-8"));
            };
            let slot = match pseudo {
                b"method" => {
                    if self.method.is_some() {
                        return self.fail(BlockError::Malformed("duplicate :method"));
                    }
                    match Method::from_bytes(value) {
                        Ok(m) => self.method = Some(m),
                        Err(_) => self.fail(BlockError::Malformed("invalid :method")),
                    }
                    return;
                }
                b"scheme" => &mut self.scheme,
                b"authority" => &mut self.authority,
                b"path" => &mut self.path,
                _ => return self.fail(BlockError::Malformed("unknown pseudo-header")),
            };
            if slot.is_some() {
                return self.fail(BlockError::Malformed("duplicate pseudo-header"));
            }
            *slot = Some(text.to_owned());
            return;
        }
        self.regular_seen = true;
        if name.iter().any(u8::is_ascii_uppercase) {
            return self.fail(BlockError::Malformed("uppercase field name"));
        }
        let Ok(name) = HeaderName::from_bytes(name) else {
            return self.fail(BlockError::Malformed("invalid field name"));
        };
        if CONNECTION_SPECIFIC.contains(&name.as_str()) {
            return self.fail(BlockError::Malformed("connection-specific field"));
        }
        if name == http::header::TE && value != b"trailers" {
            return self.fail(BlockError::Malformed("te other than trailers"));
        }
        let Ok(value) = HeaderValue::from_bytes(value) else {
            return self.fail(BlockError::Malformed("invalid field value"));
        };
        self.headers.append(name, value);
    }
}

/// A request's header block, decoded; `max_list` bounds the fields' size as
/// SETTINGS_MAX_HEADER_LIST_SIZE counts it (name + value + 32 per field).
pub fn decode_request(
    decoder: &mut loona_hpack::Decoder<'static>,
    block: &[u8],
    max_list: usize,
) -> Result<Request<()>, BlockError> {
    let mut fields = Fields::default();
    decoder
        .decode_with_cb(block, |name, value| fields.field(&name, &value, max_list))
        .map_err(|_| BlockError::Compression)?;
    if let Some(fault) = fields.fault {
        return Err(fault);
    }
    let method = fields.method.ok_or(BlockError::Malformed("no :method"))?;
    if method == Method::CONNECT {
        return Err(BlockError::Malformed("CONNECT is not served"));
    }
    let scheme = fields.scheme.ok_or(BlockError::Malformed("no :scheme"))?;
    let path = fields
        .path
        .filter(|p| !p.is_empty())
        .ok_or(BlockError::Malformed("no :path"))?;
    let mut uri = Uri::builder().path_and_query(path);
    if let Some(authority) = fields.authority {
        uri = uri.scheme(scheme.as_str()).authority(authority);
    }
    let uri = uri
        .build()
        .map_err(|_| BlockError::Malformed("invalid :path, :scheme or :authority"))?;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_2;
    *request.headers_mut() = fields.headers;
    Ok(request)
}

/// HPACK's integer with an `n`-bit prefix, `flags` in the first byte's high bits.
fn put_int(out: &mut Vec<u8>, n: u32, flags: u8, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_int(out, 7, 0, s.len());
    out.extend_from_slice(s);
}

/// The static table's index of `:status` (RFC 7541 Appendix A), and of `:status: 200`.
const STATUS_NAME: usize = 8;
const STATUS_200: u8 = 0x80 | 8;

fn put_fields(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        if CONNECTION_SPECIFIC.contains(&name.as_str()) {
            continue;
        }
        // Literal field never indexed, new name (RFC 7541 §6.2.3).
        out.push(0x10);
        put_string(out, name.as_str().as_bytes());
        put_string(out, value.as_bytes());
    }
}

/// A response head's block.
pub fn encode_response(status: StatusCode, headers: &HeaderMap, out: &mut Vec<u8>) {
    if status == StatusCode::OK {
        out.push(STATUS_200);
    } else {
        put_int(out, 4, 0x10, STATUS_NAME);
        put_string(out, status.as_str().as_bytes());
    }
    put_fields(out, headers);
}

/// A trailers block.
pub fn encode_trailers(headers: &HeaderMap, out: &mut Vec<u8>) {
    put_fields(out, headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(block: &[u8]) -> Result<Request<()>, BlockError> {
        decode_request(&mut loona_hpack::Decoder::new(), block, 16_384)
    }

    fn block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in fields {
            out.push(0x00);
            put_string(&mut out, n);
            put_string(&mut out, v);
        }
        out
    }

    const GOOD: [(&[u8], &[u8]); 4] = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"xds"),
        (b":path", b"/a.B/C"),
    ];

    #[test]
    fn a_grpc_request_decodes() {
        let mut fields = GOOD.to_vec();
        fields.push((b"content-type", b"application/grpc"));
        let req = decode(&block(&fields)).unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri().path(), "/a.B/C");
        assert_eq!(req.uri().authority().unwrap().as_str(), "xds");
        assert_eq!(req.headers()["content-type"], "application/grpc");
    }

    #[test]
    fn malformed_requests_are_refused_by_name() {
        type Fields<'a> = Vec<(&'a [u8], &'a [u8])>;
        let cases: Vec<(Fields, &str)> = vec![
            (GOOD[1..].to_vec(), "no :method"),
            (vec![GOOD[0], GOOD[1], GOOD[2]], "no :path"),
            (
                vec![GOOD[0], (b"x", b"y"), GOOD[1], GOOD[3]],
                "pseudo-header after a regular field",
            ),
            (
                [GOOD.as_slice(), &[(b":method", b"GET")]].concat(),
                "duplicate :method",
            ),
            (
                [GOOD.as_slice(), &[(b":protocol", b"x")]].concat(),
                "unknown pseudo-header",
            ),
            (
                [GOOD.as_slice(), &[(b"X-Forged", b"1")]].concat(),
                "uppercase field name",
            ),
            (
                [GOOD.as_slice(), &[(b"connection", b"close")]].concat(),
                "connection-specific field",
            ),
            (
                [GOOD.as_slice(), &[(b"te", b"gzip")]].concat(),
                "te other than trailers",
            ),
            (
                [GOOD.as_slice(), &[(b"x", b"a\r\nb")]].concat(),
                "invalid field value",
            ),
        ];
        for (fields, why) in cases {
            assert_eq!(
                decode(&block(&fields)).unwrap_err(),
                BlockError::Malformed(why)
            );
        }
    }

    #[test]
    fn a_field_list_over_the_limit_is_too_large_and_the_table_stays_in_step() {
        let mut decoder = loona_hpack::Decoder::new();
        let big = vec![b'a'; 20_000];
        let mut fields = GOOD.to_vec();
        fields.push((b"x", &big));
        assert_eq!(
            decode_request(&mut decoder, &block(&fields), 16_384).unwrap_err(),
            BlockError::TooLarge
        );
        // An indexed field added in a refused block is still in the table afterwards.
        let mut indexed = vec![0x40];
        put_string(&mut indexed, b"x-seen");
        put_string(&mut indexed, b"1");
        let mut first = block(&fields);
        first.extend_from_slice(&indexed);
        assert!(decode_request(&mut decoder, &first, 16_384).is_err());
        let mut second = block(&GOOD);
        second.push(0x80 | 62);
        let req = decode_request(&mut decoder, &second, 16_384).unwrap();
        assert_eq!(req.headers()["x-seen"], "1");
    }

    #[test]
    fn garbage_is_a_compression_error() {
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap_err(),
            BlockError::Compression
        );
        assert_eq!(decode(&[0x80]).unwrap_err(), BlockError::Compression);
    }

    #[test]
    fn responses_encode_and_decode_back() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_bytes(&[b'm'; 300]).unwrap(),
        );
        for status in [StatusCode::OK, StatusCode::NOT_FOUND] {
            let mut out = Vec::new();
            encode_response(status, &headers, &mut out);
            let mut seen = Vec::new();
            loona_hpack::Decoder::new()
                .decode_with_cb(&out, |n, v| seen.push((n.into_owned(), v.into_owned())))
                .unwrap();
            assert_eq!(
                seen[0],
                (b":status".to_vec(), status.as_str().as_bytes().to_vec())
            );
            assert_eq!(seen[2].1.len(), 300);
        }
    }
}
