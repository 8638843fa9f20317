//! Test certificates made with `openssl` (argv only): a test CA and certificates it signed —
//! for 127.0.0.1 (the control plane's and the admin console's HTTPS listeners) or for DNS
//! names (the edge router's) — and clients that trust it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A test CA, and a certificate for 127.0.0.1 it signed, in `dir`: (ca.pem, cert.pem, key.pem).
pub fn test_ca_and_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = test_ca(dir);
    let (cert, key) = signed(dir, "cert", "IP:127.0.0.1");
    std::fs::rename(key, dir.join("key.pem")).expect("rename the key");
    (ca, cert, dir.join("key.pem"))
}

const EC: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/// A test CA in `dir` (`ca.pem`, its key beside it).
pub fn test_ca(dir: &Path) -> PathBuf {
    openssl(
        &[
            &["req", "-x509"][..],
            &EC,
            &["-days", "1", "-subj", "/CN=test CA", "-keyout", "ca-key.pem", "-out", "ca.pem"],
        ]
        .concat(),
        dir,
    );
    dir.join("ca.pem")
}

/// A certificate for DNS `names` signed by the CA of [`test_ca`] in `dir`, as
/// `<stem>.pem` and `<stem>-key.pem`; its subject's CN is the first name.
pub fn certificate_for(dir: &Path, names: &[&str], stem: &str) -> (PathBuf, PathBuf) {
    let alt: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    signed(dir, stem, &alt.join(","))
}

/// `<stem>.pem` and `<stem>-key.pem` for `subject_alt_name`, signed by `ca.pem` in `dir`.
fn signed(dir: &Path, stem: &str, subject_alt_name: &str) -> (PathBuf, PathBuf) {
    let cn = subject_alt_name.split(',').next().and_then(|n| n.split_once(':')).map_or("test", |(_, n)| n);
    let (key, csr, ext, cert) =
        (format!("{stem}-key.pem"), format!("{stem}.csr"), format!("{stem}.cnf"), format!("{stem}.pem"));
    let subject = format!("/CN={cn}");
    openssl(&[&["req"][..], &EC, &["-subj", &subject, "-keyout", &key, "-out", &csr]].concat(), dir);
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName={subject_alt_name}\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .expect("ext");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
        dir,
    );
    (dir.join(cert), dir.join(key))
}

/// An HTTPS client that trusts only `ca` (TLS 1.3).
pub fn client_trusting(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read_to_string(ca).expect("read the CA");
    client_trusting_pem(&pem).build().expect("client")
}

/// A client builder that trusts only the CA in `pem` (TLS 1.3, 5 s per request, no proxy).
pub fn client_trusting_pem(pem: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA PEM"))
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .timeout(std::time::Duration::from_secs(5))
}
