//! Windows-only knobs (filled in by the Windows backend).

/// Windows-specific connect settings.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectOptionsWindows {}

/// Windows-specific listener settings.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListenerOptionsWindows {}
