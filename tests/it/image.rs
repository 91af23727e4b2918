//! Images on the local stack: build through the real Docker Engine, push to the real registry
//! (Docker registry v2 with htpasswd) with the credentials from moto's GetAuthorizationToken,
//! and ECR repositories on moto. Needs `scripts/stack up`; without the stack these tests fail
//! (with what to do), they do not skip.
//!
//! Every test uses its own project name (from the fixture's temporary folder), so repositories
//! and their IMMUTABLE tags never collide with an earlier run.
//!
//! The registry is checked through its HTTP API v2 with a client of its own (a plain HTTP/1.0
//! request over a TCP stream), not through shoal's code.

use std::collections::BTreeMap;

use shoal::aws::{self, ecr};
use shoal::discover::{self, context};
use shoal::image::{Destination, Engine, ImageError, ImageJob, Outcome, Pipeline, Progress};
use shoal::manifest::Environment;
use shoal::platform::ecs::repositories;

use crate::support;

const CONSUMER: &str = r#"kind = "worker"
cpu = 256
memory = 512
"#;

/// A sandbox project (see `support::Sandbox`) with its environment resolved.
struct Sandbox {
    sb: support::Sandbox,
    project: String,
    env: Environment,
    stack: BTreeMap<String, String>,
}

fn sandbox() -> Sandbox {
    let sb = support::Sandbox::new();
    let env = sb.env();
    Sandbox {
        project: sb.project.clone(),
        stack: sb.vars.clone(),
        env,
        sb,
    }
}

impl Sandbox {
    fn var(&self, k: &str) -> String {
        self.sb.var(k)
    }

    /// A consumer folder with this Dockerfile and files.
    fn consumer(&self, name: &str, dockerfile: &str, files: &[(&str, &str)]) {
        self.sb
            .fixture
            .write(&format!("consumers/{name}/consumer.toml"), CONSUMER);
        self.sb
            .fixture
            .write(&format!("consumers/{name}/Dockerfile"), dockerfile);
        for (rel, text) in files {
            self.sb
                .fixture
                .write(&format!("consumers/{name}/{rel}"), text);
        }
    }

    /// An ECR client on moto with these static credentials (the stack's, unless given).
    async fn ecr_client(&self, access_key: Option<&str>) -> aws_sdk_ecr::Client {
        let key = access_key
            .map(str::to_string)
            .unwrap_or_else(|| self.var("AWS_ACCESS_KEY_ID"));
        aws::ecr(&self.sb.aws_config_with_key(&self.env, &key).await)
    }

    /// Every consumer's image job, from a fresh discovery and context hash.
    fn jobs(&self) -> Vec<ImageJob> {
        let fleet =
            discover::discover(self.sb.fixture.root()).unwrap_or_else(|p| panic!("manifests: {p}"));
        fleet
            .consumers
            .iter()
            .map(|c| {
                let hash = context::hash(&c.build).expect("hash the build context");
                ImageJob::new(&self.env, &self.project, c, &hash)
            })
            .collect()
    }

    /// A pipeline pushing to the stack's registry with moto's token.
    async fn pipeline(&self, engine: Engine, access_key: Option<&str>) -> Pipeline {
        let destination =
            Destination::for_environment(&self.env, self.ecr_client(access_key).await)
                .await
                .expect("GetAuthorizationToken on moto");
        assert!(
            matches!(destination, Destination::Registry { .. }),
            "the sandbox pushes to the registry override"
        );
        Pipeline::new(engine, destination)
            .with_revision(shoal::image::git_revision(self.sb.fixture.root()))
    }

    /// `GET path` on the registry with moto's credentials: (status, body).
    async fn registry_get(&self, path: &str) -> (u16, String) {
        let token = ecr::authorization(&self.ecr_client(None).await)
            .await
            .expect("GetAuthorizationToken");
        support::http_get(
            &self.var("SHOAL_REGISTRY"),
            path,
            &token.username,
            &token.password,
        )
    }
}

/// `tcp://` to a loopback port nothing listens on.
fn closed_port() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    format!("tcp://127.0.0.1:{port}")
}

fn outcome<'a>(report: &'a shoal::image::Report, consumer: &str) -> &'a Outcome {
    match report.get(consumer) {
        Some(Ok(o)) => o,
        Some(Err(e)) => panic!("{consumer}: {e}"),
        None => panic!("{consumer} is not in the report"),
    }
}

fn error<'a>(report: &'a shoal::image::Report, consumer: &str) -> &'a ImageError {
    match report.get(consumer) {
        Some(Err(e)) => e,
        Some(Ok(o)) => panic!("{consumer} should have failed, but: {o:?}"),
        None => panic!("{consumer} is not in the report"),
    }
}

/// First run builds and pushes; the registry's API shows the tag; a second run skips it; one
/// changed byte makes a new tag, built and pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_push_skip_and_rebuild_on_one_changed_byte() {
    let sb = sandbox();
    sb.consumer(
        "hello",
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
        &[("hello.txt", "hello\n"), ("notes.log", "ignored\n")],
    );
    sb.sb
        .fixture
        .write("consumers/hello/.dockerignore", "*.log\n");
    let pipeline = sb.pipeline(Engine::from_env(), None).await;

    let jobs = sb.jobs();
    let first_tag = jobs[0].tag.clone();
    let repo = jobs[0].repository.clone();
    let report = pipeline
        .build_and_push_all(jobs, 2, &Progress::lines())
        .await;
    assert!(
        matches!(outcome(&report, "hello"), Outcome::Pushed { tag, .. } if *tag == first_tag),
        "{report:?}"
    );
    let (status, body) = sb.registry_get(&format!("/v2/{repo}/tags/list")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(support::tags_of(&body), vec![first_tag.clone()]);
    let (status, body) = sb
        .registry_get(&format!("/v2/{repo}/manifests/{first_tag}"))
        .await;
    assert_eq!(status, 200, "the manifest is there: {body}");

    // A change to an ignored file changes nothing. The second run goes through a pipeline
    // whose Docker Engine does not exist: a skip must not need it (nothing built or pushed).
    sb.sb
        .fixture
        .write("consumers/hello/notes.log", "still ignored\n");
    let engineless = sb.pipeline(Engine::at(&closed_port()), None).await;
    let report = engineless
        .build_and_push_all(sb.jobs(), 2, &Progress::lines())
        .await;
    assert_eq!(
        outcome(&report, "hello"),
        &Outcome::Skipped {
            tag: first_tag.clone()
        },
        "a second run neither builds nor pushes"
    );

    sb.sb.fixture.write("consumers/hello/hello.txt", "hellO\n");
    let jobs = sb.jobs();
    let second_tag = jobs[0].tag.clone();
    assert_ne!(second_tag, first_tag, "one byte makes a new tag");
    let report = pipeline
        .build_and_push_all(jobs, 2, &Progress::lines())
        .await;
    assert!(
        matches!(outcome(&report, "hello"), Outcome::Pushed { tag, .. } if *tag == second_tag),
        "{report:?}"
    );
    let (_, body) = sb.registry_get(&format!("/v2/{repo}/tags/list")).await;
    let mut got = support::tags_of(&body);
    got.sort();
    let mut want = vec![first_tag, second_tag];
    want.sort();
    assert_eq!(got, want);
}

/// The image carries the consumer, the context hash and the git commit as labels, and a build
/// arg reaches the Dockerfile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_name_the_consumer_hash_and_commit() {
    let sb = sandbox();
    sb.consumer(
        "labelled",
        "FROM scratch\nARG GREETING\nLABEL greeting=$GREETING\nCOPY a.txt /a.txt\n",
        &[("a.txt", "a\n")],
    );
    sb.sb.fixture.write(
        "consumers/labelled/consumer.toml",
        &format!("{CONSUMER}\n[build]\nargs = {{ GREETING = \"hi\" }}\n"),
    );
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(sb.sb.fixture.root())
            .args(["-c", "user.name=it", "-c", "user.email=it@example.com"])
            .args(args)
            .output()
            .expect("run git")
            .status
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "fixture"]);
    let revision = shoal::image::git_revision(sb.sb.fixture.root()).expect("a commit");

    let pipeline = sb.pipeline(Engine::from_env(), None).await;
    let jobs = sb.jobs();
    let job = jobs[0].clone();
    let report = pipeline
        .build_and_push_all(jobs, 1, &Progress::lines())
        .await;
    outcome(&report, "labelled");

    let docker = bollard::Docker::connect_with_defaults()
        .expect("docker")
        .negotiate_version()
        .await
        .expect("the Docker Engine");
    let image = docker
        .inspect_image(&job.reference())
        .await
        .expect("the built image is on the engine");
    let labels = image
        .config
        .and_then(|c| c.labels)
        .expect("the image has labels");
    assert_eq!(
        labels.get("shoal.consumer").map(String::as_str),
        Some("labelled")
    );
    assert_eq!(
        labels.get("shoal.context-hash"),
        Some(&job.digest),
        "{labels:?}"
    );
    assert_eq!(
        labels.get("org.opencontainers.image.revision"),
        Some(&revision)
    );
    assert_eq!(labels.get("greeting").map(String::as_str), Some("hi"));
    assert_eq!(image.architecture.as_deref(), Some("amd64"));
}

/// Repositories on moto: created with scan on push, IMMUTABLE tags and the lifecycle policy,
/// read back from moto; a second ensure creates nothing; BatchGetImage finds a tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_repositories_scan_on_push_immutable_with_lifecycle_policy() {
    let sb = sandbox();
    let client = sb.ecr_client(None).await;
    let names = vec![
        format!("{}/alpha", sb.project),
        format!("{}/beta", sb.project),
    ];
    let ensured = repositories::ensure_repositories(&client, &names, sb.env.keep_images)
        .await
        .expect("ensure on moto");
    assert_eq!(ensured.created, names);

    let described = client
        .describe_repositories()
        .repository_names(&names[0])
        .repository_names(&names[1])
        .send()
        .await
        .expect("DescribeRepositories");
    assert_eq!(described.repositories().len(), 2);
    for r in described.repositories() {
        assert_eq!(
            r.image_tag_mutability(),
            Some(&aws_sdk_ecr::types::ImageTagMutability::Immutable)
        );
        assert!(
            r.image_scanning_configuration()
                .is_some_and(|c| c.scan_on_push()),
            "{r:?}"
        );
        let policy = client
            .get_lifecycle_policy()
            .repository_name(r.repository_name().expect("name"))
            .send()
            .await
            .expect("GetLifecyclePolicy");
        let text: serde_json::Value =
            serde_json::from_str(policy.lifecycle_policy_text().expect("policy text"))
                .expect("JSON");
        assert_eq!(
            text["rules"][0]["selection"]["countType"],
            "imageCountMoreThan"
        );
        assert_eq!(text["rules"][0]["selection"]["countNumber"], 7);
    }

    let again = repositories::ensure_repositories(&client, &names, 7)
        .await
        .expect("ensure again");
    assert!(again.created.is_empty(), "{again:?}");
    assert_eq!(again.existing.len(), 2);

    // BatchGetImage: nothing there yet, then a tag put through PutImage.
    let wanted = vec!["0123456789abcdef".to_string()];
    let none = ecr::existing_tags(&client, &names[0], &wanted)
        .await
        .expect("BatchGetImage");
    assert!(none.is_empty(), "{none:?}");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                   "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
        "layers": []
    });
    client
        .put_image()
        .repository_name(&names[0])
        .image_manifest(manifest.to_string())
        .image_tag(&wanted[0])
        .send()
        .await
        .expect("PutImage on moto");
    let both = vec![wanted[0].clone(), "fedcba9876543210".to_string()];
    let found = ecr::existing_tags(&client, &names[0], &both)
        .await
        .expect("BatchGetImage");
    assert_eq!(found.into_iter().collect::<Vec<_>>(), wanted);

    // A pipeline pushing to ECR skips a consumer whose tag ECR holds, without the engine.
    sb.consumer("alpha", "FROM scratch\n", &[]);
    let mut job = sb.jobs().remove(0);
    assert_eq!(job.repository, names[0]);
    job.tag = wanted[0].clone();
    let destination = Destination::Ecr {
        client: client.clone(),
        host: sb.var("SHOAL_REGISTRY"),
        auth: ecr::authorization(&client).await.expect("token"),
    };
    let report = Pipeline::new(Engine::at(&closed_port()), destination)
        .build_and_push_all(vec![job], 1, &Progress::lines())
        .await;
    assert_eq!(
        outcome(&report, "alpha"),
        &Outcome::Skipped {
            tag: wanted[0].clone()
        }
    );

    let missing_repo = ecr::existing_tags(&client, &format!("{}/nope", sb.project), &wanted)
        .await
        .expect("a missing repository holds no tags");
    assert!(missing_repo.is_empty());
}

/// The registry refuses a password that is not the one moto's GetAuthorizationToken gives:
/// the error says which registry refused ECR's credentials and names the consumer. (moto
/// answers every account's GetAuthorizationToken with the same token, so the bad password is
/// put in here, in an override destination, rather than obtained from moto.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_registry_credentials_name_the_consumer() {
    let sb = sandbox();
    sb.consumer(
        "refused",
        "FROM scratch\nCOPY a.txt /a.txt\n",
        &[("a.txt", "a\n")],
    );
    let mut auth = ecr::authorization(&sb.ecr_client(None).await)
        .await
        .expect("GetAuthorizationToken");
    auth.password.push_str("-wrong");
    let registry = sb.var("SHOAL_REGISTRY");
    // Refused at the presence check (HEAD on the registry's API), and refused by the push
    // itself (presence read from moto's BatchGetImage, which knows no such tag; the engine's
    // push then meets the registry's 401).
    let destinations = [
        Destination::Registry {
            api: shoal::image::RegistryApi::new().expect("TLS roots"),
            host: registry.clone(),
            auth: auth.clone(),
        },
        Destination::Ecr {
            client: sb.ecr_client(None).await,
            host: registry.clone(),
            auth,
        },
    ];
    for destination in destinations {
        let pipeline = Pipeline::new(Engine::from_env(), destination);
        let report = pipeline
            .build_and_push_all(sb.jobs(), 1, &Progress::lines())
            .await;
        let err = error(&report, "refused");
        let text = err.to_string();
        assert!(matches!(err, ImageError::Credentials { .. }), "{err:?}");
        assert!(
            text.starts_with(&format!(
                "registry {registry} refused the credentials from ECR's GetAuthorizationToken \
                 for consumer refused: "
            )),
            "{text}"
        );
    }
}

/// No engine at the address: the error names the consumer, the address and DOCKER_HOST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_docker_engine_names_the_consumer() {
    let sb = sandbox();
    sb.consumer(
        "engineless",
        "FROM scratch\nCOPY a.txt /a.txt\n",
        &[("a.txt", "a\n")],
    );
    for host in [closed_port(), "unix:///nonexistent/docker.sock".to_string()] {
        let pipeline = sb.pipeline(Engine::at(&host), None).await;
        let report = pipeline
            .build_and_push_all(sb.jobs(), 1, &Progress::lines())
            .await;
        let err = error(&report, "engineless");
        let text = err.to_string();
        assert!(matches!(err, ImageError::Engine { .. }), "{err:?}");
        assert!(
            text.starts_with(&format!(
                "engineless: cannot reach the Docker Engine at {host}: "
            )),
            "{text}"
        );
        assert!(text.contains("is Docker running? DOCKER_HOST="), "{text}");
    }
}

/// Two failing Dockerfiles built at once: both errors come back, each naming its consumer and
/// showing the failing step's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_dockerfiles_show_the_step_and_name_the_consumer() {
    let sb = sandbox();
    let base = sb
        .stack
        .get("SHOAL_BASE_IMAGE")
        .cloned()
        .unwrap_or_else(|| "debian:bookworm-slim".into());
    sb.consumer(
        "runs-false",
        &format!("FROM {base}\nRUN echo about to fail && false\n"),
        &[],
    );
    sb.consumer(
        "copies-nothing",
        "FROM scratch\nCOPY missing-file /x\n",
        &[],
    );
    sb.consumer(
        "fine",
        "FROM scratch\nCOPY a.txt /a.txt\n",
        &[("a.txt", "a\n")],
    );
    let pipeline = sb.pipeline(Engine::from_env(), None).await;
    // Bars (drawn only when stderr is a terminal): the same results as lines.
    let report = pipeline
        .build_and_push_all(sb.jobs(), 2, &Progress::bars())
        .await;
    assert_eq!(report.errors().count(), 2, "{report:?}");
    assert!(matches!(outcome(&report, "fine"), Outcome::Pushed { .. }));

    let err = error(&report, "runs-false");
    let text = err.to_string();
    assert!(matches!(err, ImageError::Build { .. }), "{err:?}");
    assert!(
        text.starts_with("runs-false: the image build failed: "),
        "{text}"
    );
    assert!(text.contains("non-zero code: 1"), "{text}");
    assert!(text.contains("RUN echo about to fail && false"), "{text}");
    assert!(text.contains("about to fail"), "{text}");

    let err = error(&report, "copies-nothing");
    let text = err.to_string();
    assert!(matches!(err, ImageError::Build { .. }), "{err:?}");
    assert!(
        text.starts_with("copies-nothing: the image build failed: "),
        "{text}"
    );
    assert!(text.contains("COPY missing-file /x"), "{text}");
    assert!(text.contains("missing-file"), "{text}");
}
