//! CNI error results: the spec's codes, ours (100 and up), and how the
//! router's error classes map onto them.
//!
//! Layer: sans-IO. Every failure of the plugin becomes one [`CniError`],
//! printed on stdout as the spec's error object with a non-zero exit.
//!
//! | router reply or condition            | CNI code |
//! |--------------------------------------|----------|
//! | socket absent, refused, timed out, broken reply | 11 (try again later) |
//! | `not_ready`                          | 11       |
//! | `invalid`                            | 7 (invalid network config) |
//! | `exists`                             | 100      |
//! | `not_found` (CHECK)                  | 101      |
//! | `mismatch` (CHECK), or prevResult differs | 102 |
//! | `full`                               | 103      |
//! | `internal` (the kernel refused)      | 104      |
//! | `bad_request`, `unsupported_version`, `too_large`, an unexpected reply | 105 |
//! | any of these during STATUS           | 50 (plugin not available) |

use rscni_types::version::SpecVersion;
use serde::{Deserialize, Serialize};

use crate::api::client::ClientError;
use crate::api::ErrorCode;

/// Incompatible CNI version.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// Invalid necessary environment variables.
pub const INVALID_ENV: u32 = 4;
/// I/O failure (reading stdin).
pub const IO_FAILURE: u32 = 5;
/// Failed to decode content (stdin is not JSON, a malformed version).
pub const DECODE: u32 = 6;
/// Invalid network config.
pub const INVALID_CONFIG: u32 = 7;
/// Try again later: the router is unreachable or starting.
pub const TRY_AGAIN_LATER: u32 = 11;
/// STATUS: the plugin cannot service ADD requests.
pub const NOT_AVAILABLE: u32 = 50;

/// The attachment id is attached already with other parameters (an ADD
/// twice without a DEL between).
pub const EXISTS: u32 = 100;
/// CHECK: the router has no attachment with this id.
pub const NOT_ATTACHED: u32 = 101;
/// CHECK: the attachment differs from what the router or prevResult says.
pub const MISMATCH: u32 = 102;
/// The router holds as many ports as it can.
pub const ROUTER_FULL: u32 = 103;
/// The router could not make the interface (the kernel refused).
pub const ROUTER_FAILED: u32 = 104;
/// The router did not understand us: plugin and router versions differ.
pub const ROUTER_PROTOCOL: u32 = 105;
/// The IPAM plugin failed without a CNI error object, or its answer was
/// not a usable result.
pub const IPAM_FAILED: u32 = 106;

/// One failure, as the spec's error object carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// Error code: the spec's below 100, ours from 100.
    pub code: u32,
    /// A short message characterizing the error.
    pub msg: String,
    /// A longer message describing the error.
    pub details: String,
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.msg, self.code, self.details)
    }
}

impl CniError {
    /// An error with `code`, its short message and `details`.
    pub fn new(code: u32, msg: &str, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.to_string(),
            details: details.into(),
        }
    }

    /// Code 1.
    pub fn version(details: impl Into<String>) -> CniError {
        CniError::new(INCOMPATIBLE_VERSION, "Incompatible CNI version", details)
    }

    /// Code 4.
    pub fn env(details: impl Into<String>) -> CniError {
        CniError::new(
            INVALID_ENV,
            "Invalid necessary environment variables",
            details,
        )
    }

    /// Code 6.
    pub fn decode(details: impl Into<String>) -> CniError {
        CniError::new(DECODE, "Failed to decode content", details)
    }

    /// Code 7.
    pub fn config(details: impl Into<String>) -> CniError {
        CniError::new(INVALID_CONFIG, "Invalid network config", details)
    }

    /// Code 11.
    pub fn try_again(details: impl Into<String>) -> CniError {
        CniError::new(TRY_AGAIN_LATER, "Try again later", details)
    }

    /// Code 50.
    pub fn not_available(details: impl Into<String>) -> CniError {
        CniError::new(NOT_AVAILABLE, "Plugin not available", details)
    }

    /// Code 102.
    pub fn mismatch(details: impl Into<String>) -> CniError {
        CniError::new(MISMATCH, "Attachment differs", details)
    }

    /// Code 106.
    pub fn ipam(details: impl Into<String>) -> CniError {
        CniError::new(IPAM_FAILED, "IPAM plugin failed", details)
    }

    /// The error as printed on stdout, reported under `version`.
    pub fn to_json(&self, version: SpecVersion) -> Vec<u8> {
        let wire = Wire {
            cni_version: version.to_string(),
            code: self.code,
            msg: self.msg.clone(),
            details: self.details.clone(),
        };
        // A struct of strings and a number always serializes.
        let mut out = serde_json::to_vec(&wire).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Reads a delegated plugin's error object from its stdout; `None`
    /// when the output is not one.
    pub fn from_plugin_output(stdout: &[u8]) -> Option<CniError> {
        let w: WireIn = serde_json::from_slice(stdout).ok()?;
        Some(CniError {
            code: w.code,
            msg: w.msg,
            details: w.details,
        })
    }

    /// The same error with `prefix: ` before its details, naming where it
    /// came from.
    pub fn context(mut self, prefix: &str) -> CniError {
        self.details = if self.details.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}: {}", self.details)
        };
        self
    }
}

impl From<rscni_types::error::Error> for CniError {
    fn from(e: rscni_types::error::Error) -> CniError {
        CniError::new(u32::from(&e), e.msg(), e.details())
    }
}

/// The spec's error object on our stdout.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    cni_version: String,
    code: u32,
    msg: String,
    details: String,
}

/// A delegated plugin's error object: the reference implementation omits
/// `cniVersion` and an empty `details`.
#[derive(Deserialize)]
struct WireIn {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// Maps a failed router call (`what` names the request) onto a CNI error
/// for ADD, DEL, CHECK and GC; see the module table.
pub fn from_router(what: &str, e: &ClientError) -> CniError {
    let details = format!("{what}: {e}");
    match e {
        ClientError::Unreachable { .. } | ClientError::Protocol { .. } => {
            CniError::try_again(details)
        }
        ClientError::Api(api) => match api.code {
            ErrorCode::NotReady => CniError::try_again(details),
            ErrorCode::Invalid => CniError::config(details),
            ErrorCode::Exists => CniError::new(EXISTS, "Attachment exists", details),
            ErrorCode::NotFound => CniError::new(NOT_ATTACHED, "Not attached", details),
            ErrorCode::Mismatch => CniError::mismatch(details),
            ErrorCode::Full => CniError::new(ROUTER_FULL, "Router full", details),
            ErrorCode::Internal => {
                CniError::new(ROUTER_FAILED, "Router could not make the port", details)
            }
            ErrorCode::BadRequest | ErrorCode::UnsupportedVersion | ErrorCode::TooLarge => {
                unexpected(details)
            }
        },
    }
}

/// Code 105: the router's answer is not what the protocol promises for the
/// request.
pub fn unexpected(details: impl Into<String>) -> CniError {
    CniError::new(
        ROUTER_PROTOCOL,
        "Router and plugin disagree on the protocol",
        details,
    )
}
