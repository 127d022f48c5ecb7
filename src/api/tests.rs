use super::*;

fn decode(s: &str) -> Result<Request, ApiError> {
    decode_request(s.as_bytes())
}

#[test]
fn requests_round_trip() {
    let reqs = [
        Request::Status {},
        Request::Ports {},
        Request::Attach(Attach {
            id: "c0ffee/eth0".into(),
            netns: "/proc/42/ns/net".into(),
            ifname: "eth0".into(),
            kind: PortKind::Tun,
            addresses: vec![
                "198.19.1.5/24".parse().unwrap(),
                "2001:2:0:1::5/64".parse().unwrap(),
            ],
            offload: false,
            network: Some("blue".into()),
        }),
        Request::Detach { id: "a".into() },
        Request::Check { id: "a".into() },
        Request::Gc {
            prefix: "net/".into(),
            keep: vec!["net/a".into(), "net/b/c".into()],
        },
    ];
    for r in reqs {
        let line = encode_request(&r);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(decode_request(&line[..line.len() - 1]), Ok(r));
    }
}

#[test]
fn attach_defaults_to_a_plain_veth() {
    let r = decode(
        r#"{"v":1,"op":"attach","id":"x","netns":"/run/netns/a","ifname":"eth0","addresses":["198.19.1.5/24"]}"#,
    )
    .unwrap();
    let Request::Attach(a) = r else { panic!() };
    assert_eq!(a.kind, PortKind::Veth);
    assert!(!a.offload);
}

#[test]
fn replies_round_trip() {
    let bodies = [
        Body::Detached { found: false },
        Body::Collected(vec!["x".into()]),
        Body::Ports(vec![]),
        Body::Error(ApiError {
            code: ErrorCode::NotReady,
            message: "starting".into(),
        }),
    ];
    for b in bodies {
        let line = encode_reply(&Reply::new(b.clone()));
        let r = decode_reply(&line[..line.len() - 1]).unwrap();
        assert_eq!(r.ok, !matches!(b, Body::Error(_)));
        assert_eq!(r.body, b);
    }
    let line = encode_reply(&Reply::error(ErrorCode::BadRequest, "no"));
    assert_eq!(
        std::str::from_utf8(&line).unwrap(),
        "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"bad_request\",\"message\":\"no\"}}\n"
    );
}

#[test]
fn bad_requests_get_their_class() {
    let cases: &[(&str, ErrorCode)] = &[
        ("", ErrorCode::BadRequest),
        ("not json", ErrorCode::BadRequest),
        ("[1]", ErrorCode::BadRequest),
        (r#"{"op":"status"}"#, ErrorCode::BadRequest),
        (r#"{"v":2,"op":"status"}"#, ErrorCode::UnsupportedVersion),
        (r#"{"v":"1","op":"status"}"#, ErrorCode::UnsupportedVersion),
        (
            r#"{"v":2,"op":"whatever","x":1}"#,
            ErrorCode::UnsupportedVersion,
        ),
        (r#"{"v":1,"op":"bogus"}"#, ErrorCode::BadRequest),
        (r#"{"v":1}"#, ErrorCode::BadRequest),
        (r#"{"v":1,"op":"status","extra":1}"#, ErrorCode::BadRequest),
        (r#"{"v":1,"op":"detach"}"#, ErrorCode::BadRequest),
        (
            r#"{"v":1,"op":"detach","id":"a","x":1}"#,
            ErrorCode::BadRequest,
        ),
        (r#"{"v":1,"op":"ports","all":true}"#, ErrorCode::BadRequest),
        (r#"{"v":1,"op":"detach","id":""}"#, ErrorCode::Invalid),
        (r#"{"v":1,"op":"detach","id":"a b"}"#, ErrorCode::Invalid),
        (
            r#"{"v":1,"op":"detach","id":"a\u0000"}"#,
            ErrorCode::Invalid,
        ),
        (
            r#"{"v":1,"op":"gc","prefix":"","keep":["ok",""]}"#,
            ErrorCode::Invalid,
        ),
        (r#"{"v":1,"op":"gc","keep":["ok"]}"#, ErrorCode::BadRequest),
        (
            r#"{"v":1,"op":"attach","id":"x","netns":"relative","ifname":"eth0","addresses":["198.19.1.5/24"]}"#,
            ErrorCode::Invalid,
        ),
        (
            r#"{"v":1,"op":"attach","id":"x","netns":"/proc/../etc","ifname":"eth0","addresses":["198.19.1.5/24"]}"#,
            ErrorCode::Invalid,
        ),
        (
            r#"{"v":1,"op":"attach","id":"x","netns":"/run/netns/a","ifname":"eth0/x","addresses":["198.19.1.5/24"]}"#,
            ErrorCode::Invalid,
        ),
        (
            r#"{"v":1,"op":"attach","id":"x","netns":"/run/netns/a","ifname":"eth0","addresses":[]}"#,
            ErrorCode::Invalid,
        ),
        (
            r#"{"v":1,"op":"attach","id":"x","netns":"/run/netns/a","ifname":"eth0","addresses":["198.19.1.5/33"]}"#,
            ErrorCode::BadRequest,
        ),
        (
            r#"{"v":1,"op":"attach","id":"x","netns":"/run/netns/a","ifname":"eth0","kind":"tap","addresses":["198.19.1.5/24"]}"#,
            ErrorCode::BadRequest,
        ),
        (
            r#"{"v":1,"op":"attach","id":"x","netns":"/run/netns/a","ifname":"eth0","kind":"tun","offload":true,"addresses":["198.19.1.5/24"]}"#,
            ErrorCode::Invalid,
        ),
    ];
    for (line, code) in cases {
        match decode(line) {
            Err(e) => assert_eq!(e.code, *code, "{line}: {e}"),
            Ok(r) => panic!("{line} decoded as {r:?}"),
        }
    }
    let id = "x".repeat(MAX_ID + 1);
    assert_eq!(
        decode(&format!(r#"{{"v":1,"op":"detach","id":"{id}"}}"#))
            .unwrap_err()
            .code,
        ErrorCode::Invalid
    );
    let big = vec![b' '; MAX_REQUEST];
    assert_eq!(decode_request(&big).unwrap_err().code, ErrorCode::TooLarge);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = decode_request(&bytes);
        let _ = decode_reply(&bytes);
    }
}
