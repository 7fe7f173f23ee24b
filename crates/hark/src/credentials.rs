//! Credential commands. Secrets are printed once and stored only as SHA-256 digests.

use anyhow::{bail, Context};
use clap::Subcommand;
use hark_core::ids::random_hex;
use hark_core::{Clock, SystemClock};
use hark_store::{hash_secret, KeyKind, Store};
use serde_json::json;

use crate::config::open_store;
use crate::StoreArgs;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a secret and a public key for an environment.
    Create {
        #[arg(long, default_value = "development")]
        environment: String,
        /// Print one JSON line instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Create a Management API service token.
    Create {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum SigningKeysCommand {
    /// Generate an RSA key pair: the public half is stored, the private PEM is printed for
    /// your backend to sign user tokens (RS256) with.
    Create {
        #[arg(long, default_value = "development")]
        environment: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum EnvironmentsCommand {
    /// Turn enhanced security (required user tokens for public keys) on or off.
    SetEnhancedSecurity {
        #[arg(long)]
        environment: String,
        #[arg(long, action = clap::ArgAction::Set)]
        enabled: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

async fn environment_id(store: &dyn Store, slug: &str) -> anyhow::Result<String> {
    match store.environment_by_slug(slug).await? {
        Some(env) => Ok(env.id),
        None => bail!("no environment named `{slug}` (expected development or production)"),
    }
}

pub async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::Create {
        environment,
        json,
        store,
    } = command;
    let (store, _) = open_store(&store).await?;
    let env_id = environment_id(store.as_ref(), &environment).await?;
    let secret = format!("sk_{}", random_hex(24));
    let public = format!("pk_{}", random_hex(24));
    let now = SystemClock.now_ms();
    store
        .create_api_key(&env_id, KeyKind::Secret, &hash_secret(&secret), now)
        .await?;
    store
        .create_api_key(&env_id, KeyKind::Public, &hash_secret(&public), now)
        .await?;
    if json {
        println!(
            "{}",
            json!({"environment": environment, "secret_key": secret, "public_key": public})
        );
    } else {
        println!("environment: {environment}\nsecret key:  {secret}\npublic key:  {public}");
        println!("Keep the secret key safe: it is shown only once.");
    }
    Ok(())
}

pub async fn tokens(command: TokensCommand) -> anyhow::Result<()> {
    let TokensCommand::Create { json, store } = command;
    let (store, _) = open_store(&store).await?;
    let token = format!("hark_st_{}", random_hex(32));
    store
        .create_service_token(&hash_secret(&token), SystemClock.now_ms())
        .await?;
    if json {
        println!("{}", json!({"service_token": token}));
    } else {
        println!("service token: {token}\nKeep it safe: it is shown only once.");
    }
    Ok(())
}

pub async fn signing_keys(command: SigningKeysCommand) -> anyhow::Result<()> {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let SigningKeysCommand::Create {
        environment,
        json,
        store,
    } = command;
    let (store, _) = open_store(&store).await?;
    let env_id = environment_id(store.as_ref(), &environment).await?;
    let private =
        rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).context("generating an RSA key")?;
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .context("encoding the public key")?;
    let private_pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding the private key")?;
    store
        .add_signing_key(&env_id, &public_pem, SystemClock.now_ms())
        .await?;
    if json {
        println!(
            "{}",
            json!({"environment": environment, "private_key": private_pem.as_str(), "public_key": public_pem})
        );
    } else {
        println!("{}", private_pem.as_str());
    }
    Ok(())
}

pub async fn environments(command: EnvironmentsCommand) -> anyhow::Result<()> {
    let EnvironmentsCommand::SetEnhancedSecurity {
        environment,
        enabled,
        store,
    } = command;
    let (store, _) = open_store(&store).await?;
    let env_id = environment_id(store.as_ref(), &environment).await?;
    store.set_enhanced_security(&env_id, enabled).await?;
    println!(
        "{environment}: enhanced security {}",
        if enabled { "on" } else { "off" }
    );
    Ok(())
}
