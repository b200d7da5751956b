//! Page cache, admission policies, sender and receiver for XBZRLE live migration.
