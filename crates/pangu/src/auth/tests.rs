//! The signature scheme as plain functions: no sockets, a clock passed in.

use super::*;

const NOW: u64 = 1_750_000_000_000;

fn read(path: &str) -> RequestFacts<'_> {
    RequestFacts { method: "GET", path_and_query: path, content_length: 0, crc32c: "", sha256: "" }
}

fn append<'a>(crc: &'a str, len: u64) -> RequestFacts<'a> {
    RequestFacts {
        method: "POST",
        path_and_query: "/chunks/00000000000000ff/append?offset=0",
        content_length: len,
        crc32c: crc,
        sha256: "",
    }
}

fn cluster() -> Keyring {
    Keyring::single(Secret::from_hex(&"11".repeat(32)).unwrap())
}

fn verify_at(v: &Verifier, header: &str, facts: &RequestFacts<'_>, now: u64) -> Result<Principal, AuthError> {
    v.verify(Some(header.as_bytes()), facts, now)
}

#[test]
fn a_signed_request_verifies_once() {
    let keys = cluster();
    let v = Verifier::master(keys.clone(), TokenIssuer::generate());
    let facts = read("/chunks/00000000000000ff?offset=0&len=10");
    let header = Credentials::cluster(&keys).authorization_at(&facts, NOW, 7);
    assert!(header.starts_with("PANGU1-HMAC-SHA256 Key=cluster,Timestamp=1750000000000,Nonce=0000000000000007,"));
    assert_eq!(verify_at(&v, &header, &facts, NOW + 3), Ok(Principal::Cluster));
    // The same request again (a replay), even a little later: refused.
    assert_eq!(verify_at(&v, &header, &facts, NOW + 5_000), Err(AuthError::Replayed));
    // The same request with another nonce is another request.
    let again = Credentials::cluster(&keys).authorization_at(&facts, NOW, 8);
    assert_eq!(verify_at(&v, &again, &facts, NOW + 5_000), Ok(Principal::Cluster));
}

#[test]
fn the_string_to_sign_is_the_documented_one() {
    // Other implementations (the SDK tests' Python) sign this exact string.
    let facts = append("3735928559", 5);
    assert_eq!(
        string_to_sign("cluster", NOW, "00ab", &facts),
        "PANGU1-HMAC-SHA256\ncluster\nPOST\n/chunks/00000000000000ff/append?offset=0\n1750000000000\n00ab\n5\n3735928559\n"
    );
    // HMAC-SHA256 of that string (nonce 0xab) with the key 0x11 * 32, as Python's hmac
    // module computes it.
    let header = Credentials::cluster(&cluster()).authorization_at(&facts, NOW, 0xab);
    assert_eq!(
        header,
        "PANGU1-HMAC-SHA256 Key=cluster,Timestamp=1750000000000,Nonce=00000000000000ab,\
         Signature=b5dd4637c53916a3477bbcd54e021a8127b2788ff573393e03539048e1d310d5"
    );
}

#[test]
fn every_signed_part_of_a_request_matters() {
    let keys = cluster();
    let v = Verifier::master(keys.clone(), TokenIssuer::generate());
    let facts = append("3735928559", 65536);
    let header = Credentials::cluster(&keys).authorization_at(&facts, NOW, 1);
    let changed = [
        RequestFacts { method: "PUT", ..facts },
        RequestFacts { path_and_query: "/chunks/00000000000000ff/append?offset=1", ..facts },
        RequestFacts { path_and_query: "/chunks/00000000000000fe/append?offset=0", ..facts },
        RequestFacts { content_length: 65535, ..facts },
        RequestFacts { crc32c: "3735928558", ..facts },
        RequestFacts { crc32c: "", ..facts },
        RequestFacts { sha256: "00", ..facts },
    ];
    for other in changed {
        assert_eq!(verify_at(&v, &header, &other, NOW), Err(AuthError::BadSignature), "{other:?}");
    }
    // The header's own fields are signed too.
    let forged_time = header.replace("Timestamp=1750000000000", "Timestamp=1750000000001");
    assert_eq!(verify_at(&v, &forged_time, &facts, NOW), Err(AuthError::BadSignature));
    let forged_nonce = header.replace("Nonce=0000000000000001", "Nonce=0000000000000002");
    assert_eq!(verify_at(&v, &forged_nonce, &facts, NOW), Err(AuthError::BadSignature));
    // And the untouched request still passes.
    assert_eq!(verify_at(&v, &header, &facts, NOW), Ok(Principal::Cluster));
}

#[test]
fn a_wrong_secret_or_none_is_refused() {
    let v = Verifier::master(cluster(), TokenIssuer::generate());
    let facts = read("/chunks");
    let header = Credentials::cluster(&Keyring::generate()).authorization_at(&facts, NOW, 1);
    assert_eq!(verify_at(&v, &header, &facts, NOW), Err(AuthError::BadSignature));
    assert_eq!(v.verify(None, &facts, NOW), Err(AuthError::Missing));
}

#[test]
fn timestamps_outside_the_window_are_refused_before_any_hmac() {
    let keys = cluster();
    let v = Verifier::master(keys.clone(), TokenIssuer::generate());
    let facts = read("/chunks");
    let signed_at = |t| Credentials::cluster(&keys).authorization_at(&facts, t, t);
    assert_eq!(
        verify_at(&v, &signed_at(NOW - WINDOW_MS - 1), &facts, NOW),
        Err(AuthError::Expired { skew_ms: WINDOW_MS as i64 + 1 })
    );
    assert_eq!(
        verify_at(&v, &signed_at(NOW + WINDOW_MS + 1), &facts, NOW),
        Err(AuthError::Expired { skew_ms: -(WINDOW_MS as i64) - 1 })
    );
    assert_eq!(verify_at(&v, &signed_at(NOW - WINDOW_MS), &facts, NOW), Ok(Principal::Cluster));
    assert_eq!(verify_at(&v, &signed_at(NOW + WINDOW_MS), &facts, NOW), Ok(Principal::Cluster));
    // A badly signed request with a stale time is refused for its time (no HMAC spent).
    let garbage = format!("{SCHEME} Key=cluster,Timestamp=5,Nonce=1,Signature={}", "0".repeat(64));
    assert_eq!(verify_at(&v, &garbage, &facts, NOW), Err(AuthError::Expired { skew_ms: NOW as i64 - 5 }));
}

#[test]
fn malformed_headers_are_refused() {
    let v = Verifier::master(cluster(), TokenIssuer::generate());
    let facts = read("/chunks");
    let sig = "0".repeat(64);
    let ok_shape = format!("Key=cluster,Timestamp={NOW},Nonce=1,Signature={sig}");
    for header in [
        "".to_owned(),
        "Bearer x".to_owned(),
        SCHEME.to_string(),
        format!("AWS4-HMAC-SHA256 {ok_shape}"),
        format!("{SCHEME} Key=cluster,Timestamp={NOW},Nonce=1"),
        format!("{SCHEME} {ok_shape},Key=cluster"),
        format!("{SCHEME} {ok_shape},Extra=1"),
        format!("{SCHEME} Key=cluster,Timestamp=-1,Nonce=1,Signature={sig}"),
        format!("{SCHEME} Key=cluster,Timestamp={NOW},Nonce=xyz,Signature={sig}"),
        format!("{SCHEME} Key=cluster,Timestamp={NOW},Nonce=,Signature={sig}"),
        format!("{SCHEME} Key=cluster,Timestamp={NOW},Nonce={},Signature={sig}", "a".repeat(33)),
        format!("{SCHEME} Key=cluster,Timestamp={NOW},Nonce=1,Signature=abc"),
        format!("{SCHEME} {ok_shape}{}", " ".repeat(MAX_AUTHORIZATION_LEN)),
    ] {
        let result = verify_at(&v, &header, &facts, NOW);
        assert!(matches!(result, Err(AuthError::Malformed(_))), "{header:?}: {result:?}");
    }
    assert_eq!(v.verify(Some(b"PANGU1-HMAC-SHA256 \xff"), &facts, NOW), Err(AuthError::Malformed("not text")));
    for key in ["master", "server-", "server-x", "server--1"] {
        let header = format!("{SCHEME} Key={key},Timestamp={NOW},Nonce=1,Signature={sig}");
        assert_eq!(verify_at(&v, &header, &facts, NOW), Err(AuthError::UnknownKey), "{key}");
    }
}

#[test]
fn a_servers_key_takes_its_token_and_the_cluster_secret() {
    let keys = cluster();
    let issuer = TokenIssuer::generate();
    let master = Verifier::master(keys.clone(), issuer.clone());
    let (seven, eight) = (ServerId(7), ServerId(8));
    let token = issuer.token(seven);
    assert_eq!(token, issuer.token(seven), "tokens are recomputed, not stored");
    assert_ne!(token, issuer.token(eight));
    assert_ne!(token, TokenIssuer::generate().token(seven), "another master's token differs");

    let facts = read("/pangu/v1/status");
    let as_seven = Credentials::server(seven, &token, &keys);
    assert_eq!(
        verify_at(&master, &as_seven.authorization_at(&facts, NOW, 1), &facts, NOW),
        Ok(Principal::Server(seven))
    );
    // Server 7's token claimed as server 8's.
    let forged = as_seven.authorization_at(&facts, NOW, 2).replace("Key=server-7", "Key=server-8");
    assert_eq!(verify_at(&master, &forged, &facts, NOW), Err(AuthError::BadSignature));
    // The token under another cluster secret, or the cluster secret without the token.
    let other_cluster = Credentials::server(seven, &token, &Keyring::generate());
    assert_eq!(
        verify_at(&master, &other_cluster.authorization_at(&facts, NOW, 3), &facts, NOW),
        Err(AuthError::BadSignature)
    );
    let guessed = Credentials::server(seven, &TokenIssuer::generate().token(seven), &keys);
    assert_eq!(
        verify_at(&master, &guessed.authorization_at(&facts, NOW, 4), &facts, NOW),
        Err(AuthError::BadSignature)
    );

    // A chunkserver knows its own key only; the master's orders to it are signed with it.
    let chunkserver = Verifier::chunkserver(keys.clone(), seven, &token);
    assert_eq!(
        verify_at(&chunkserver, &as_seven.authorization_at(&facts, NOW, 5), &facts, NOW),
        Ok(Principal::Server(seven))
    );
    let as_eight = Credentials::server(eight, &issuer.token(eight), &keys);
    assert_eq!(
        verify_at(&chunkserver, &as_eight.authorization_at(&facts, NOW, 6), &facts, NOW),
        Err(AuthError::UnknownKey)
    );
    // Given another identity, it takes that one's orders and no longer the old one's.
    chunkserver.set_identity(eight, &issuer.token(eight));
    assert_eq!(
        verify_at(&chunkserver, &as_eight.authorization_at(&facts, NOW, 7), &facts, NOW),
        Ok(Principal::Server(eight))
    );
    assert_eq!(
        verify_at(&chunkserver, &as_seven.authorization_at(&facts, NOW, 8), &facts, NOW),
        Err(AuthError::UnknownKey)
    );
}

#[test]
fn a_rotation_accepts_both_secrets_and_signs_with_the_first() {
    let (old, new) = (Secret::generate(), Secret::generate());
    let during = Keyring::new(vec![new.clone(), old.clone()]).unwrap();
    let v = Verifier::master(during.clone(), TokenIssuer::generate());
    let facts = read("/chunks");
    for (nonce, signer) in
        [Keyring::single(old.clone()), Keyring::single(new.clone()), during.clone()].iter().enumerate()
    {
        let header = Credentials::cluster(signer).authorization_at(&facts, NOW, nonce as u64);
        assert_eq!(verify_at(&v, &header, &facts, NOW), Ok(Principal::Cluster));
    }
    // A server's key under either secret, too.
    let issuer = TokenIssuer::generate();
    let v = Verifier::master(during.clone(), issuer.clone());
    let token = issuer.token(ServerId(3));
    for (nonce, signer) in [Keyring::single(old.clone()), during.clone()].iter().enumerate() {
        let header = Credentials::server(ServerId(3), &token, signer).authorization_at(&facts, NOW, nonce as u64);
        assert_eq!(verify_at(&v, &header, &facts, NOW), Ok(Principal::Server(ServerId(3))));
    }
    // After the rotation the old one is refused.
    let after = Verifier::master(Keyring::single(new), TokenIssuer::generate());
    let header = Credentials::cluster(&Keyring::single(old)).authorization_at(&facts, NOW, 9);
    assert_eq!(verify_at(&after, &header, &facts, NOW), Err(AuthError::BadSignature));
}

#[test]
fn the_replay_cache_forgets_what_expired_and_is_bounded() {
    let mut cache = ReplayCache::new(3);
    cache.admit(1, NOW + 100, NOW).unwrap();
    cache.admit(2, NOW + 1_500, NOW).unwrap();
    assert_eq!(cache.admit(1, NOW + 100, NOW + 50), Err(AuthError::Replayed));
    cache.admit(3, NOW + 2_500, NOW).unwrap();
    // Full: refused, not remembered (memory stays bounded).
    assert_eq!(cache.admit(4, NOW + 2_500, NOW), Err(AuthError::Busy));
    assert_eq!(cache.len(), 3);
    // Tag 1 expired (its second ended): forgotten, and room for another.
    cache.admit(4, NOW + 2_500, NOW + 1_001).unwrap();
    assert_eq!(cache.len(), 3);
    // Everything expired: empty again.
    cache.admit(5, NOW + 10_000, NOW + 3_001).unwrap();
    assert_eq!(cache.len(), 1);
}

#[test]
fn keys_round_trip_as_text() {
    let keys = Keyring::new(vec![Secret::generate(), Secret::generate()]).unwrap();
    let text = format!("# a comment\n\n{}", keys.to_text());
    let parsed = Keyring::parse(&text).unwrap();
    assert_eq!(parsed.keys(), keys.keys());
    assert_eq!(Keyring::parse("# nothing\n").unwrap_err(), KeyError::Empty);
    assert_eq!(Keyring::parse("abcd\n").unwrap_err(), KeyError::BadKey);
    assert_eq!(format!("{:?}", keys.signing()), "Secret(..)", "Debug shows nothing of a key");
}

#[test]
fn key_files_are_private_and_made_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pangu").join("cluster.key");
    let (made, created) = keyfile::load_or_create_keyring(&path).unwrap();
    assert!(created);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let (again, created) = keyfile::load_or_create_keyring(&path).unwrap();
    assert!(!created);
    assert_eq!(again.keys(), made.keys());
    // A file others can read is refused.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(keyfile::load_keyring(&path), Err(keyfile::KeyFileError::Exposed { .. })));

    let issuer_path = dir.path().join("pangu").join("master.key");
    let issuer = keyfile::load_or_create_issuer(&issuer_path).unwrap();
    let token = issuer.token(ServerId(1));
    assert_eq!(keyfile::load_or_create_issuer(&issuer_path).unwrap().token(ServerId(1)), token);
    let token_path = dir.path().join("server-token");
    assert_eq!(keyfile::read_token(&token_path).unwrap(), None);
    keyfile::write_token(&token_path, &token).unwrap();
    assert_eq!(keyfile::read_token(&token_path).unwrap(), Some(token));
}
