//! DTLS 1.2 and 1.3 for WebRTC, over the Sans-I/O `dimpl` state machine.
//!
//! This adapter adds what WebRTC needs around `dimpl`:
//! - the role comes from SDP `a=setup` (or the direct API) and is fixed before the
//!   handshake starts;
//! - the peer's certificate is checked against the fingerprint signalled in SDP; a
//!   mismatch fails the connection and no keying material is ever released;
//! - DTLS-SRTP keying material (RFC 5764) is surfaced with the negotiated profile;
//! - application data (SCTP for data channels) flows both ways once connected.
//!
//! The version: [`DtlsVersions::Auto`] (default) lets `dimpl` negotiate — as server it
//! answers DTLS 1.3 to a ClientHello that offers it and falls back to 1.2 otherwise; as
//! client it sends a hybrid ClientHello both kinds of server accept.
//!
//! SRTP profile choice: `dimpl` 0.9 has no setting for it, and the DTLS server decides.
//! Its DTLS 1.2 server picks AEAD_AES_256_GCM, then AEAD_AES_128_GCM, then
//! AES_CM_128_HMAC_SHA1_80 among the client's offers; its DTLS 1.3 server takes the
//! client's first. As client we offer what `dimpl` offers and the peer's server chooses
//! (Chromium's picks AES_CM_128_HMAC_SHA1_80, in both versions).
//! [`RtcConfig::set_srtp_profiles`](crate::RtcConfig::set_srtp_profiles) only filters
//! the outcome. Measured with Chromium 156 (`rtc-core/tests/chromium_connect.rs`): every
//! combination lands on AES_CM_128_HMAC_SHA1_80 except a DTLS 1.2 `dimpl` server
//! (AEAD_AES_256_GCM). Preferring AEAD_AES_128_GCM would need a server-side preference
//! list in `dimpl` (a `Config` option consulted by both servers) — an upstream change,
//! not something this side can steer — and it would still not apply when the browser is
//! the DTLS server, the engine's default role. The profile is a local choice with no
//! interop risk, so no patched `dimpl` is carried.
//!
//! `dimpl` signs with ECDSA only; a peer that insists on an RSA certificate cannot
//! connect.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm,
};
use dimpl::crypto::{
    Buf, CryptoProvider, HashAlgorithm, KeyProvider, SignatureAlgorithm, SigningKey,
};
use dimpl::{CryptoError, CryptoOperation};

/// Errors of the DTLS layer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DtlsError {
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    CertificateGeneration(#[source] rcgen::Error),
    /// A fingerprint string could not be parsed.
    #[error("bad fingerprint: {0}")]
    BadFingerprint(String),
    /// The fingerprint's hash function is not supported.
    #[error("unsupported fingerprint hash function {0:?}")]
    UnsupportedHash(String),
    /// The peer's certificate does not match the signalled fingerprint.
    #[error("remote certificate does not match the signalled fingerprint")]
    FingerprintMismatch,
    /// The DTLS state machine failed (fatal for the connection).
    #[error("dtls: {0}")]
    Protocol(#[source] dimpl::Error),
    /// The handshake settled on an SRTP profile this crate does not know.
    #[error("dtls: unknown SRTP profile {0:?}")]
    UnknownSrtpProfile(dimpl::SrtpProfile),
    /// The keying material exported by DTLS could not key SRTP.
    #[error("srtp keying: {0}")]
    SrtpKeying(#[source] crate::srtp::SrtpError),
    /// The negotiated SRTP profile is not one we allow.
    #[error("peer negotiated an SRTP profile we do not allow: {0:?}")]
    SrtpProfileRefused(SrtpProfileId),
    /// The DTLS role has not been decided yet.
    #[error("DTLS role not set")]
    RoleNotSet,
    /// The connection is closed or failed.
    #[error("DTLS connection is closed")]
    Closed,
}

/// A certificate fingerprint as signalled in SDP `a=fingerprint` (RFC 8122).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// Hash function name, lower case (`sha-256`, `sha-1`, `sha-384`, `sha-512`).
    pub hash_func: String,
    /// The digest bytes.
    pub bytes: Vec<u8>,
}

impl Fingerprint {
    /// Computes the fingerprint of a DER certificate with the given hash function.
    ///
    /// # Errors
    ///
    /// [`DtlsError::UnsupportedHash`] when `hash_func` is not sha-1, sha-256, sha-384
    /// or sha-512.
    pub fn of_der(hash_func: &str, der: &[u8]) -> Result<Fingerprint, DtlsError> {
        let alg = hash_alg(hash_func)?;
        Ok(Fingerprint {
            hash_func: hash_func.to_ascii_lowercase(),
            bytes: digest::digest(alg, der).as_ref().to_vec(),
        })
    }

    /// Whether `der` hashes to this fingerprint.
    pub fn matches_der(&self, der: &[u8]) -> bool {
        match hash_alg(&self.hash_func) {
            Ok(alg) => {
                let d = digest::digest(alg, der);
                // Not secret: fingerprints are public, constant time is not needed.
                d.as_ref() == self.bytes.as_slice()
            }
            Err(_) => false,
        }
    }
}

fn hash_alg(name: &str) -> Result<&'static digest::Algorithm, DtlsError> {
    match name.to_ascii_lowercase().as_str() {
        "sha-1" => Ok(&digest::SHA1_FOR_LEGACY_USE_ONLY),
        "sha-256" => Ok(&digest::SHA256),
        "sha-384" => Ok(&digest::SHA384),
        "sha-512" => Ok(&digest::SHA512),
        other => Err(DtlsError::UnsupportedHash(other.to_string())),
    }
}

impl fmt::Display for Fingerprint {
    /// Writes `sha-256 AB:CD:…`, the value of an SDP `a=fingerprint` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.hash_func)?;
        for (i, b) in self.bytes.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl FromStr for Fingerprint {
    type Err = DtlsError;

    /// Parses `sha-256 AB:CD:…` (the value of an SDP `a=fingerprint` line).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut it = s.split_whitespace();
        let (Some(func), Some(hex), None) = (it.next(), it.next(), it.next()) else {
            return Err(DtlsError::BadFingerprint(s.to_string()));
        };
        let alg = hash_alg(func)?;
        let mut bytes = Vec::with_capacity(alg.output_len());
        for part in hex.split(':') {
            let b = u8::from_str_radix(part, 16)
                .ok()
                .filter(|_| part.len() == 2)
                .ok_or_else(|| DtlsError::BadFingerprint(s.to_string()))?;
            bytes.push(b);
        }
        if bytes.len() != alg.output_len() {
            return Err(DtlsError::BadFingerprint(s.to_string()));
        }
        Ok(Fingerprint {
            hash_func: func.to_ascii_lowercase(),
            bytes,
        })
    }
}

/// A DTLS certificate and private key (ECDSA P-256), shareable across many `Rtc`.
///
/// Generating one costs a P-256 key generation and a signature (well under a
/// millisecond); servers may generate one and hand clones of it to every `Rtc`.
#[derive(Clone)]
pub struct DtlsCert {
    inner: Arc<dimpl::DtlsCertificate>,
    fingerprint: Fingerprint,
    /// The private key, parsed once and shared by every association using this
    /// certificate (see [`CertKeys`]); `None` for a key `dimpl` parses itself.
    key: Option<Arc<ParsedKey>>,
}

impl fmt::Debug for DtlsCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsCert")
            .field("fingerprint", &self.fingerprint.to_string())
            .finish()
    }
}

impl DtlsCert {
    /// Generates a fresh self-signed ECDSA P-256 certificate.
    ///
    /// Validity uses rcgen's fixed defaults (1975–4096), so no clock is read;
    /// WebRTC peers authenticate the certificate by fingerprint only. The serial
    /// number is random (Firefox rejects repeated serials from one issuer name).
    ///
    /// # Errors
    ///
    /// [`DtlsError::CertificateGeneration`] when key or certificate generation fails (a
    /// broken random number generator).
    pub fn new_ecdsa_p256() -> Result<DtlsCert, DtlsError> {
        let gen_err = DtlsError::CertificateGeneration;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "WebRTC");
        params.distinguished_name = dn;
        let serial: [u8; 16] = rand::random();
        params.serial_number = Some(serial.to_vec().into());
        let cert = params.self_signed(&key).map_err(gen_err)?;
        Self::from_der(cert.der().to_vec(), key.serialize_der())
    }

    /// Uses a caller-supplied certificate (DER) and PKCS#8 private key (DER).
    /// The key must be ECDSA (P-256 or P-384).
    ///
    /// # Errors
    ///
    /// None in practice: the SHA-256 fingerprint is always computable. The `Result`
    /// leaves room for validating the key.
    pub fn from_der(certificate: Vec<u8>, private_key: Vec<u8>) -> Result<DtlsCert, DtlsError> {
        let fingerprint = Fingerprint::of_der("sha-256", &certificate)?;
        let key = ParsedKey::from_pkcs8(&private_key).map(Arc::new);
        Ok(DtlsCert {
            inner: Arc::new(dimpl::DtlsCertificate {
                certificate,
                private_key,
            }),
            fingerprint,
            key,
        })
    }

    /// The SHA-256 fingerprint to signal in SDP.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }
}

/// Which DTLS versions a handshake may use ([`RtcConfig::set_dtls_versions`](crate::RtcConfig::set_dtls_versions)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DtlsVersions {
    /// DTLS 1.3 when the peer supports it, DTLS 1.2 otherwise (default).
    #[default]
    Auto,
    /// DTLS 1.2 only.
    Dtls12,
    /// DTLS 1.3 only: a 1.2-only peer cannot connect.
    Dtls13,
}

/// The DTLS version a handshake settled on ([`Rtc::dtls_version`](crate::Rtc::dtls_version)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtlsVersion {
    /// DTLS 1.2 (RFC 6347).
    Dtls12,
    /// DTLS 1.3 (RFC 9147).
    Dtls13,
}

impl fmt::Display for DtlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DtlsVersion::Dtls12 => "DTLS 1.2",
            DtlsVersion::Dtls13 => "DTLS 1.3",
        })
    }
}

/// SRTP protection profiles negotiable through DTLS-SRTP (`use_srtp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfileId {
    /// SRTP_AES128_CM_HMAC_SHA1_80 (RFC 5764).
    Aes128CmSha1_80,
    /// SRTP_AEAD_AES_128_GCM (RFC 7714).
    AeadAes128Gcm,
    /// SRTP_AEAD_AES_256_GCM (RFC 7714).
    AeadAes256Gcm,
}

impl SrtpProfileId {
    fn from_dimpl(p: dimpl::SrtpProfile) -> Option<Self> {
        match p {
            dimpl::SrtpProfile::AES128_CM_SHA1_80 => Some(SrtpProfileId::Aes128CmSha1_80),
            dimpl::SrtpProfile::AEAD_AES_128_GCM => Some(SrtpProfileId::AeadAes128Gcm),
            dimpl::SrtpProfile::AEAD_AES_256_GCM => Some(SrtpProfileId::AeadAes256Gcm),
            _ => None,
        }
    }
}

/// What the DTLS layer reports to the `Rtc`.
#[derive(Debug)]
pub(crate) enum DtlsEvent {
    /// Handshake done and the peer certificate matched the fingerprint.
    Connected,
    /// SRTP keys (released only after the fingerprint check passed).
    SrtpKeys {
        profile: SrtpProfileId,
        material: Vec<u8>,
        we_are_client: bool,
    },
    /// Decrypted application data (SCTP packets).
    Data(Vec<u8>),
    /// The peer closed the connection (close_notify).
    Closed,
    /// The connection failed; no further traffic.
    Failed(DtlsError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Handshaking,
    Connected,
    Done,
}

/// A certificate's ECDSA private key (PKCS#8), parsed once.
struct ParsedKey {
    pair: EcdsaKeyPair,
    /// `ECDSA_P256_SHA256_ASN1_SIGNING` or `ECDSA_P384_SHA384_ASN1_SIGNING`.
    hash: HashAlgorithm,
}

impl fmt::Debug for ParsedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl ParsedKey {
    fn from_pkcs8(der: &[u8]) -> Option<ParsedKey> {
        let algs: [(&'static EcdsaSigningAlgorithm, HashAlgorithm); 2] = [
            (&ECDSA_P256_SHA256_ASN1_SIGNING, HashAlgorithm::SHA256),
            (&ECDSA_P384_SHA384_ASN1_SIGNING, HashAlgorithm::SHA384),
        ];
        algs.into_iter().find_map(|(alg, hash)| {
            let pair = EcdsaKeyPair::from_pkcs8(alg, der).ok()?;
            Some(ParsedKey { pair, hash })
        })
    }
}

/// A shared [`ParsedKey`] as `dimpl` signs with it.
#[derive(Debug)]
struct SharedKey(Arc<ParsedKey>);

impl SigningKey for SharedKey {
    fn sign(
        &mut self,
        data: &[u8],
        hash_alg: HashAlgorithm,
        out: &mut Buf,
    ) -> Result<(), CryptoError> {
        let key_hash = self.0.hash;
        if hash_alg != key_hash {
            return Err(CryptoError::SigningKeyHashMismatch {
                key_hash,
                requested: hash_alg,
            });
        }
        let sig = self
            .0
            .pair
            .sign(&SystemRandom::new(), data)
            .map_err(|_| CryptoError::OperationFailed(CryptoOperation::Sign))?;
        out.clear();
        out.extend_from_slice(sig.as_ref());
        Ok(())
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }

    fn hash_algorithm(&self) -> HashAlgorithm {
        self.0.hash
    }

    fn supported_hash_algorithms(&self) -> &[HashAlgorithm] {
        std::slice::from_ref(&self.0.hash)
    }
}

thread_local! {
    /// The certificate (its DER key bytes and parsed key) of the association this
    /// thread is inside `dimpl` for ([`with_cert`]).
    static CURRENT_CERT: RefCell<Option<CurrentCert>> = const { RefCell::new(None) };
}

/// What [`with_cert`] puts in [`CURRENT_CERT`]: two reference counts, no allocation.
type CurrentCert = (Arc<dimpl::DtlsCertificate>, Arc<ParsedKey>);

/// Runs `f` (calls into `dimpl` that may load the private key) with `cert` as this
/// thread's current certificate, for [`CertKeys`]. A certificate whose key did not
/// parse here runs `f` as is (`dimpl` parses it itself).
fn with_cert<R>(cert: &DtlsCert, f: impl FnOnce() -> R) -> R {
    let Some(key) = &cert.key else {
        return f();
    };
    let current = (Arc::clone(&cert.inner), Arc::clone(key));
    let prev = CURRENT_CERT.with(|c| c.replace(Some(current)));
    let r = f();
    CURRENT_CERT.with(|c| c.replace(prev));
    r
}

/// The key provider of [`shared_config`]: `dimpl` loads the certificate's private key
/// from its DER bytes every time it builds a handshake engine (three times per DTLS
/// client handshake in auto mode), and parsing a PKCS#8 EC key validates the key with a
/// scalar multiplication: ~9 % of an engine-side handshake. The key parsed once in
/// [`DtlsCert::from_der`] is handed out instead when the bytes asked for are the
/// current association's ([`with_cert`]); anything else is parsed by `dimpl`'s own
/// provider, as before. No key outlives the certificates holding it.
#[derive(Debug)]
struct CertKeys {
    fallback: &'static dyn KeyProvider,
}

impl KeyProvider for CertKeys {
    fn load_private_key(&self, key_der: &[u8]) -> Result<Box<dyn SigningKey>, CryptoError> {
        // Only a byte-for-byte match gets the parsed key, so a stale entry (left by a
        // panic inside `with_cert`) can never hand out another certificate's key.
        let shared = CURRENT_CERT.with(|c| {
            let c = c.borrow();
            let (cert, key) = c.as_ref()?;
            (cert.private_key == key_der).then(|| Arc::clone(key))
        });
        match shared {
            Some(k) => Ok(Box::new(SharedKey(k))),
            None => self.fallback.load_private_key(key_der),
        }
    }
}

/// The `dimpl` configuration every association uses (MTU 1200, default suites, keys
/// through [`CertKeys`]), built once per process and shared: building one selects and
/// validates the crypto provider and filters its cipher suites, work that showed up as
/// a large share of each handshake when it was repeated per session. It holds no keys
/// and reads no clock.
fn shared_config() -> Arc<dimpl::Config> {
    static CONFIG: OnceLock<Arc<dimpl::Config>> = OnceLock::new();
    static KEYS: OnceLock<CertKeys> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let default = dimpl::crypto::aws_lc_rs::default_provider();
        let keys = KEYS.get_or_init(|| CertKeys {
            fallback: default.key_provider,
        });
        let provider = CryptoProvider {
            key_provider: keys,
            ..default
        };
        let config = dimpl::Config::builder()
            .mtu(1200)
            .with_crypto_provider(provider)
            .build()
            // The builder only fails on inconsistent custom suites/PSK, none are set.
            .expect("default dimpl config is valid");
        Arc::new(config)
    }))
}

/// One DTLS association over the ICE transport.
pub(crate) struct DtlsTransport {
    cert: DtlsCert,
    config: Arc<dimpl::Config>,
    dtls: Option<dimpl::Dtls>,
    active: Option<bool>,
    remote_fingerprint: Option<Fingerprint>,
    peer_cert: Option<Vec<u8>>,
    pending_keys: Option<(SrtpProfileId, Vec<u8>)>,
    handshake_done: bool,
    allowed_profiles: Vec<SrtpProfileId>,
    versions: DtlsVersions,
    state: State,
    events: VecDeque<DtlsEvent>,
    transmits: VecDeque<Vec<u8>>,
    next_timeout: Option<Instant>,
    scratch: Vec<u8>,
    last_now: Option<Instant>,
    early_data: Vec<Vec<u8>>,
    /// Application-data records received on the established association (each one
    /// decrypted and authenticated).
    app_records: u64,
}

/// Application records held while the handshake's end is being verified.
const MAX_EARLY_DATA: usize = 64;

impl DtlsTransport {
    pub(crate) fn new(
        cert: DtlsCert,
        allowed_profiles: Vec<SrtpProfileId>,
        versions: DtlsVersions,
    ) -> Self {
        DtlsTransport {
            cert,
            config: shared_config(),
            dtls: None,
            active: None,
            remote_fingerprint: None,
            peer_cert: None,
            pending_keys: None,
            handshake_done: false,
            allowed_profiles,
            versions,
            state: State::Idle,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            next_timeout: None,
            scratch: vec![0; 2048],
            last_now: None,
            early_data: Vec::new(),
            app_records: 0,
        }
    }

    /// Authenticated application-data records received so far.
    pub(crate) fn app_records(&self) -> u64 {
        self.app_records
    }

    pub(crate) fn local_fingerprint(&self) -> &Fingerprint {
        self.cert.fingerprint()
    }

    pub(crate) fn set_remote_fingerprint(&mut self, fp: Fingerprint) {
        if self.remote_fingerprint.as_ref() == Some(&fp) {
            return;
        }
        self.remote_fingerprint = Some(fp);
        self.maybe_release();
    }

    /// Sets the role. `true`: DTLS client (SDP `setup:active`).
    pub(crate) fn set_active(&mut self, active: bool) {
        if self.state == State::Idle {
            self.active = Some(active);
        }
    }

    /// The version the handshake settled on (`None` before that is known).
    pub(crate) fn version(&self) -> Option<DtlsVersion> {
        let v = self.dtls.as_ref()?.protocol_version()?;
        if v == dimpl::ProtocolVersion::DTLS1_3 {
            Some(DtlsVersion::Dtls13)
        } else if v == dimpl::ProtocolVersion::DTLS1_2 {
            Some(DtlsVersion::Dtls12)
        } else {
            None
        }
    }

    pub(crate) fn is_active(&self) -> Option<bool> {
        self.active
    }

    // Used by the tests now and by the data-channel wiring (issue 9).
    #[allow(dead_code)]
    pub(crate) fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Starts the handshake (client sends ClientHello on the next poll). Needs the role.
    pub(crate) fn start(&mut self, now: Instant) -> Result<(), DtlsError> {
        if self.state != State::Idle {
            return Ok(());
        }
        let Some(active) = self.active else {
            return Err(DtlsError::RoleNotSet);
        };
        let (config, cert) = (Arc::clone(&self.config), (*self.cert.inner).clone());
        let versions = self.versions;
        let (dtls, first) = with_cert(&self.cert, || {
            let mut dtls = match versions {
                DtlsVersions::Auto => dimpl::Dtls::new_auto(config, cert, now),
                DtlsVersions::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
                DtlsVersions::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            };
            dtls.set_active(active);
            let first = dtls.handle_timeout(now);
            (dtls, first)
        });
        if let Err(e) = first {
            self.dtls = Some(dtls);
            self.fail(DtlsError::Protocol(e));
            return Ok(());
        }
        self.dtls = Some(dtls);
        self.state = State::Handshaking;
        self.last_now = Some(now);
        self.drain();
        Ok(())
    }

    pub(crate) fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        if self.state == State::Idle && self.active == Some(false) {
            // A server starts on the first ClientHello.
            let _ = self.start(now);
        }
        let Some(dtls) = self.dtls.as_mut() else {
            return;
        };
        if self.state == State::Done {
            return;
        }
        let tick = self.last_now.is_none_or(|t| now > t);
        if tick {
            self.last_now = Some(now);
        }
        let step = |dtls: &mut dimpl::Dtls| {
            if tick {
                dtls.handle_timeout(now)?;
            }
            dtls.handle_packet(packet)
        };
        // Keys are only loaded during the handshake; an established association's
        // records skip the thread-local.
        let r = if self.state == State::Connected {
            step(dtls)
        } else {
            with_cert(&self.cert, || step(dtls))
        };
        if let Err(e) = r {
            self.fail(DtlsError::Protocol(e));
            return;
        }
        self.drain();
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Done {
            return;
        }
        let Some(dtls) = self.dtls.as_mut() else {
            return;
        };
        if self.last_now.is_some_and(|t| now < t) {
            return;
        }
        self.last_now = Some(now);
        if self.next_timeout.is_some_and(|t| now >= t) {
            if let Err(e) = with_cert(&self.cert, || dtls.handle_timeout(now)) {
                self.fail(DtlsError::Protocol(e));
                return;
            }
            self.drain();
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Done {
            return None;
        }
        self.next_timeout
    }

    // Used by the tests now and by the data-channel wiring (issue 9).
    #[allow(dead_code)]
    pub(crate) fn send_data(&mut self, data: &[u8]) -> Result<(), DtlsError> {
        if self.state == State::Done {
            return Err(DtlsError::Closed);
        }
        let Some(dtls) = self.dtls.as_mut() else {
            return Err(DtlsError::RoleNotSet);
        };
        if let Err(e) = dtls.send_application_data(data) {
            let err = DtlsError::Protocol(e);
            self.fail(err.clone());
            return Err(err);
        }
        self.drain();
        Ok(())
    }

    pub(crate) fn close(&mut self) {
        if let Some(dtls) = self.dtls.as_mut()
            && self.state != State::Done
        {
            let _ = dtls.close();
            self.drain();
        }
        self.state = State::Done;
    }

    /// Frees the scratch buffer the handshake's records were written through; it is
    /// regrown (once) if the association sends anything later (alerts, data).
    pub(crate) fn release_handshake_buffers(&mut self) {
        self.scratch = Vec::new();
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    fn fail(&mut self, e: DtlsError) {
        if self.state != State::Done {
            self.state = State::Done;
            self.pending_keys = None;
            self.early_data.clear();
            self.events.push_back(DtlsEvent::Failed(e));
        }
    }

    fn drain(&mut self) {
        loop {
            let Some(dtls) = self.dtls.as_mut() else {
                return;
            };
            match dtls.poll_output(&mut self.scratch) {
                dimpl::Output::Packet(p) => self.transmits.push_back(p.to_vec()),
                dimpl::Output::BufferTooSmall { needed } => {
                    self.scratch.resize(needed, 0);
                }
                dimpl::Output::Timeout(t) => {
                    self.next_timeout = Some(t);
                    break;
                }
                dimpl::Output::Connected => {
                    self.handshake_done = true;
                }
                dimpl::Output::PeerCert(der) => {
                    self.peer_cert = Some(der.to_vec());
                }
                dimpl::Output::KeyingMaterial(km, profile) => {
                    match SrtpProfileId::from_dimpl(profile) {
                        Some(p) => self.pending_keys = Some((p, km.to_vec())),
                        None => {
                            self.fail(DtlsError::UnknownSrtpProfile(profile));
                            return;
                        }
                    }
                }
                dimpl::Output::ApplicationData(d) => {
                    if self.state == State::Connected {
                        self.app_records += 1;
                        self.events.push_back(DtlsEvent::Data(d.to_vec()));
                    } else if self.early_data.len() < MAX_EARLY_DATA {
                        // Arrived with (or before we released) the handshake's end: held
                        // until the fingerprint check passes, dropped if it fails.
                        self.early_data.push(d.to_vec());
                    }
                }
                dimpl::Output::CloseNotify => {
                    self.state = State::Done;
                    self.events.push_back(DtlsEvent::Closed);
                }
                _ => {}
            }
        }
        self.maybe_release();
    }

    /// Releases Connected + keys once the handshake is done and the certificate
    /// matched the signalled fingerprint.
    fn maybe_release(&mut self) {
        if self.state != State::Handshaking || !self.handshake_done {
            return;
        }
        let (Some(fp), Some(der)) = (self.remote_fingerprint.as_ref(), self.peer_cert.as_ref())
        else {
            return;
        };
        if !fp.matches_der(der) {
            self.fail(DtlsError::FingerprintMismatch);
            if let Some(dtls) = self.dtls.as_mut() {
                let _ = dtls.close();
            }
            return;
        }
        if let Some((profile, _)) = &self.pending_keys
            && !self.allowed_profiles.contains(profile)
        {
            let p = *profile;
            self.fail(DtlsError::SrtpProfileRefused(p));
            return;
        }
        self.state = State::Connected;
        // Checked: nothing reads the peer's certificate again (≈ 300 bytes per
        // connection otherwise kept for its life).
        self.peer_cert = None;
        self.events.push_back(DtlsEvent::Connected);
        if let Some((profile, material)) = self.pending_keys.take() {
            self.events.push_back(DtlsEvent::SrtpKeys {
                profile,
                material,
                we_are_client: self.active == Some(true),
            });
        }
        for d in std::mem::take(&mut self.early_data) {
            self.events.push_back(DtlsEvent::Data(d));
        }
    }
}

#[cfg(test)]
mod tests;
