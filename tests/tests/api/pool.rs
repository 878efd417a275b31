//! The service's pool checks a connection before handing it out only after it sat idle for a
//! while ([`api::configuration::PING_AFTER_IDLE`]): one that died meanwhile is replaced, not
//! handed to a request.

use api::configuration::{PING_AFTER_IDLE, connect_pool};
use std::time::Duration;
use tests::fresh_database;

#[tokio::test]
async fn a_connection_that_died_while_idle_is_replaced_before_it_is_handed_out() {
    // Arrange: the service's pool with one connection, which has served a query.
    let database = fresh_database(2).await;
    let options = database.pool.connect_options();
    let url = format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().expect("a database name")
    );
    let pool = connect_pool(&url, 1).await.unwrap();
    let first: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();

    // Act: the server ends that backend while the connection sits idle in the pool, for
    // longer than the window in which a connection is trusted without a ping.
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(&database.pool)
        .await
        .unwrap();
    assert!(ended);
    tokio::time::sleep(PING_AFTER_IDLE + Duration::from_millis(250)).await;

    // Assert: the next query runs, on a new backend.
    let second: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("the dead connection was handed out");
    assert_ne!(first, second);
}
