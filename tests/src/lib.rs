//! `brlock-tests`: end-to-end tests that start the real `brlockd`.
