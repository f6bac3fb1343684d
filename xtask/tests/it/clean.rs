//! `clean` against the real daemon: it removes exactly what carries the
//! demo's labels and leaves everything else alone; a second run removes
//! nothing and still succeeds.

use std::process::Command;

use testkit::unique;

use crate::{need_docker, text, xtask};

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn exists(kind: &str, name: &str) -> bool {
    Command::new("docker")
        .args([kind, "inspect", name])
        .output()
        .unwrap()
        .status
        .success()
}

const IMAGE: &str = "debian:bookworm-slim";

#[test]
fn clean_removes_exactly_the_demos_objects() {
    if !need_docker() {
        return;
    }
    let project = unique("ktd-clean");
    let cluster = unique("ktd-k3d");
    let other = unique("ktd-other");
    let compose_label = format!("com.docker.compose.project={project}");
    let k3d_label = format!("k3d.cluster={cluster}");
    let other_label = format!("com.docker.compose.project={other}");

    let ours = [
        (
            "container",
            format!("{project}-producer-1"),
            compose_label.clone(),
        ),
        (
            "container",
            format!("k3d-{cluster}-server-0"),
            k3d_label.clone(),
        ),
        ("network", format!("{project}-net"), compose_label.clone()),
        ("network", format!("k3d-{cluster}"), k3d_label.clone()),
        ("volume", format!("{project}-status"), compose_label.clone()),
        ("volume", format!("k3d-{cluster}-images"), k3d_label.clone()),
    ];
    let theirs = [
        ("container", format!("{other}-app-1"), other_label.clone()),
        ("container", format!("{project}-unlabelled"), String::new()),
        ("network", format!("{other}-net"), other_label.clone()),
        ("volume", format!("{other}-data"), other_label.clone()),
        ("volume", format!("{project}-unlabelled"), String::new()),
    ];
    for (kind, name, label) in ours.iter().chain(theirs.iter()) {
        let mut args = vec![kind.to_string(), "create".into()];
        if !label.is_empty() {
            args.extend(["--label".into(), label.clone()]);
        }
        if *kind == "container" {
            args.extend(["--name".into(), name.clone(), IMAGE.into(), "true".into()]);
        } else {
            args.push(name.clone());
        }
        docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    // A k3d node attached to the demo's network, as in a real run.
    docker(&[
        "network",
        "connect",
        &format!("{project}-net"),
        &format!("k3d-{cluster}-server-0"),
    ]);

    let out = xtask(&["clean", "--project", &project, "--cluster", &cluster])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for (kind, name, _) in &ours {
        assert!(
            !exists(kind, name),
            "{kind} {name} survived clean:\n{stdout}"
        );
        assert!(
            stdout.contains(&format!("removed {kind} {name}\n")),
            "not reported: {kind} {name}\n{stdout}"
        );
    }
    for (kind, name, _) in &theirs {
        assert!(
            exists(kind, name),
            "clean removed {kind} {name}, which is not the demo's"
        );
        assert!(!stdout.contains(name.as_str()), "{stdout}");
    }
    assert!(
        stdout.contains("removed 2 container(s), 2 network(s), 2 volume(s), 0 image(s)"),
        "{stdout}"
    );

    let again = xtask(&["clean", "--project", &project, "--cluster", &cluster])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&again);
    assert!(
        again.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.starts_with("nothing to remove"), "{stdout}");

    for (kind, name, _) in &theirs {
        let rm = if *kind == "container" {
            vec![*kind, "rm", "-f", name]
        } else {
            vec![*kind, "rm", name]
        };
        docker(&rm);
    }
}
