use std::net::IpAddr;

use crate::api::{ConfigError, EngineError};
use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::io::BackendPreference;

fn start_err(cfg: EngineConfig) -> EngineError {
    match Engine::start(cfg) {
        Ok(h) => {
            h.shutdown();
            panic!("the engine started");
        }
        Err(e) => e,
    }
}

#[test]
fn bad_configurations_are_typed_errors() {
    let base = EngineConfig {
        pin: false,
        backend: BackendPreference::Portable,
        ..EngineConfig::default()
    };
    let e = start_err(EngineConfig {
        cores: Some(Vec::new()),
        ..base.clone()
    });
    assert!(
        matches!(e, EngineError::Config(ConfigError::NoShards)),
        "{e}"
    );
    let e = start_err(EngineConfig {
        cores: Some((0..65).collect()),
        ..base.clone()
    });
    assert!(
        matches!(e, EngineError::Config(ConfigError::TooManyShards(65))),
        "{e}"
    );
    let e = start_err(EngineConfig {
        shards: Some(1),
        bind_v4: None,
        ..base.clone()
    });
    assert!(
        matches!(e, EngineError::Config(ConfigError::NoBindAddress)),
        "{e}"
    );
    let e = start_err(EngineConfig {
        shards: Some(1),
        bind_v4: Some(IpAddr::from([0, 0, 0, 0])),
        ..base
    });
    assert!(
        matches!(e, EngineError::Config(ConfigError::WildcardAddress(a)) if a.ip().is_unspecified()),
        "{e}"
    );
    // The cause is reachable as the error's source.
    assert!(std::error::Error::source(&e).is_some());
}
