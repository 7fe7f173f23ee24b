//! Who is calling: a secret key (full access to one environment), a public key (one
//! user's feed, messages and profile), or a Management API service token.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use hark_store::{hash_secret, Environment, KeyKind};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::{ApiError, ErrorCode};
use crate::extract::Params;
use crate::state::AppState;

#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    Secret,
    /// A public key. `user` is the verified token subject when the environment enforces
    /// user tokens; `None` means any user may be named (enhanced security off).
    Public {
        user: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Caller {
    pub environment: Environment,
    pub access: Access,
}

impl Caller {
    pub fn env_id(&self) -> &str {
        &self.environment.id
    }

    pub fn require_secret(&self) -> Result<(), ApiError> {
        match self.access {
            Access::Secret => Ok(()),
            Access::Public { .. } => Err(ApiError::new(
                ErrorCode::SecretKeyRequired,
                "This endpoint requires a secret API key",
            )),
        }
    }

    /// May this caller read or change data belonging to `user_id`?
    pub fn require_user(&self, user_id: &str) -> Result<(), ApiError> {
        match &self.access {
            Access::Secret | Access::Public { user: None } => Ok(()),
            Access::Public { user: Some(u) } if u == user_id => Ok(()),
            Access::Public { .. } => Err(ApiError::new(
                ErrorCode::UserAccessDenied,
                "The user token does not grant access to this user",
            )),
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get("authorization")?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then_some(token)
}

#[derive(Debug, Deserialize)]
struct UserTokenClaims {
    sub: String,
}

async fn verify_user_token(
    state: &AppState,
    environment: &Environment,
    token: &str,
) -> Result<String, ApiError> {
    let keys = state.store.signing_keys(&environment.id).await?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.validate_aud = false;
    for pem in keys {
        let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) else {
            continue;
        };
        if let Ok(data) = jsonwebtoken::decode::<UserTokenClaims>(token, &key, &validation) {
            if !data.claims.sub.is_empty() {
                return Ok(data.claims.sub);
            }
        }
    }
    Err(ApiError::new(
        ErrorCode::InvalidUserToken,
        "The user token is invalid, expired, or not signed by this environment's signing key",
    ))
}

impl Caller {
    /// Resolves an API key (and, for a public key, the user token) to a caller. Shared by
    /// the HTTP extractor (headers) and the realtime socket (query parameters).
    pub async fn authenticate(
        state: &AppState,
        key: Option<&str>,
        user_token: Option<&str>,
    ) -> Result<Self, ApiError> {
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Err(ApiError::new(
                ErrorCode::ApiKeyMissing,
                "An API key is required: send `Authorization: Bearer <key>`",
            ));
        };
        let expected = if key.starts_with("sk_") {
            KeyKind::Secret
        } else if key.starts_with("pk_") {
            KeyKind::Public
        } else {
            return Err(ApiError::new(
                ErrorCode::InvalidApiKey,
                "The API key is invalid",
            ));
        };
        let key_hash = hash_secret(key);
        let found = match state.lookups.api_key(&key_hash) {
            Some(found) => Some(found),
            None => {
                let found = state.store.find_api_key(&key_hash).await?;
                // Only secret keys: a public key's environment decides per request
                // whether a user token is required (enhanced security), which can
                // change at any time.
                if let Some(found @ (_, KeyKind::Secret)) = &found {
                    state.lookups.remember_api_key(key_hash, found.clone());
                }
                found
            }
        };
        let Some((environment, kind)) = found else {
            return Err(ApiError::new(
                ErrorCode::InvalidApiKey,
                "The API key is invalid",
            ));
        };
        if kind != expected {
            return Err(ApiError::new(
                ErrorCode::InvalidApiKey,
                "The API key is invalid",
            ));
        }
        let access = match kind {
            KeyKind::Secret => Access::Secret,
            KeyKind::Public => {
                let token = user_token.filter(|v| !v.is_empty());
                if environment.enhanced_security {
                    let Some(token) = token else {
                        return Err(ApiError::new(
                            ErrorCode::MissingUserToken,
                            "This environment requires a signed user token (X-Knock-User-Token)",
                        ));
                    };
                    Access::Public {
                        user: Some(verify_user_token(state, &environment, token).await?),
                    }
                } else {
                    Access::Public { user: None }
                }
            }
        };
        Ok(Caller {
            environment,
            access,
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user_token = parts
            .headers
            .get("x-knock-user-token")
            .and_then(|v| v.to_str().ok());
        Caller::authenticate(state, bearer(parts), user_token).await
    }
}

/// A Management API caller: a valid service token and the environment it addresses
/// (`?environment=`, default `development`).
#[derive(Debug, Clone)]
pub struct MgmtCaller {
    pub environment: Environment,
}

impl FromRequestParts<AppState> for MgmtCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = bearer(parts) else {
            return Err(ApiError::new(
                ErrorCode::ServiceTokenMissing,
                "A service token is required: send `Authorization: Bearer <token>`",
            ));
        };
        if !state
            .store
            .service_token_exists(&hash_secret(token))
            .await?
        {
            return Err(ApiError::new(
                ErrorCode::InvalidServiceToken,
                "The service token is invalid",
            ));
        }
        let params = Params::parse(parts.uri.query().unwrap_or_default());
        let slug = params.get("environment").unwrap_or("development");
        let Some(environment) = state.store.environment_by_slug(slug).await? else {
            return Err(ApiError::new(
                ErrorCode::EnvironmentMissing,
                format!("No environment `{slug}`"),
            ));
        };
        Ok(MgmtCaller { environment })
    }
}
