package io.tasktable;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.Map;

import org.junit.jupiter.api.Test;

class DatabaseUrlTest {

    @Test
    void a_libpq_url_gives_host_port_database_and_credentials() {
        DatabaseUrl url = DatabaseUrl.parse("postgresql://app:s%40cret@db.example.com:6543/orders?sslmode=require");

        assertThat(url).isEqualTo(new DatabaseUrl("db.example.com", 6543, "orders", "app", "s@cret",
                Map.of("sslmode", "require")));
        assertThat(url.jdbcUrl()).isEqualTo("jdbc:postgresql://db.example.com:6543/orders?sslmode=require");
        assertThat(url.properties()).containsEntry("user", "app").containsEntry("password", "s@cret");
    }

    @Test
    void a_jdbc_url_may_carry_the_credentials_as_parameters() {
        DatabaseUrl url = DatabaseUrl.parse("jdbc:postgresql://localhost/tasks?user=worker&password=pw&ssl=false");

        assertThat(url).isEqualTo(new DatabaseUrl("localhost", 5432, "tasks", "worker", "pw", Map.of("ssl", "false")));
    }

    @Test
    void missing_user_and_database_default_like_psql() {
        DatabaseUrl url = DatabaseUrl.parse("postgres://127.0.0.1");

        assertThat(url.user()).isEqualTo(System.getProperty("user.name"));
        assertThat(url.database()).isEqualTo(url.user());
        assertThat(url.password()).isEmpty();
    }

    @Test
    void the_password_never_appears_in_messages() {
        assertThat(DatabaseUrl.parse("postgresql://app:topsecret@h/db")).hasToString("postgresql://app@h:5432/db");
        assertThatThrownBy(() -> DatabaseUrl.parse("mysql://app:topsecret@h/db"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageNotContaining("topsecret");
    }

    @Test
    void other_schemes_and_hostless_urls_are_refused() {
        assertThatThrownBy(() -> DatabaseUrl.parse("mysql://h/db")).hasMessageStartingWith("unsupported database URL");
        assertThatThrownBy(() -> DatabaseUrl.parse("postgresql:///db")).hasMessageContaining("names no host");
    }
}
