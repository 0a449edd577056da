//! JOSE for the broker: the shared core (`sts-jose`, also under sts-verifier), re-exported
//! where the rest of the broker reaches it.

pub use sts_jose::{Algorithm, alg, b64url, b64url_decode, b64url_into, header, jws, unix_now};
