package io.tasktable.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.SQLException;
import java.time.Duration;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;
import org.openqa.selenium.By;
import org.openqa.selenium.OutputType;
import org.openqa.selenium.WebElement;
import org.openqa.selenium.chrome.ChromeDriver;
import org.openqa.selenium.chrome.ChromeDriverService;
import org.openqa.selenium.chrome.ChromeOptions;
import org.openqa.selenium.support.ui.ExpectedConditions;
import org.openqa.selenium.support.ui.WebDriverWait;

import io.tasktable.testing.Sql;
import io.tasktable.testing.TestDatabase;

/**
 * The dashboard in a real headless Chromium against a real server and database: it shows what the database
 * holds, and its Retry and Pause buttons change the database. Leaves a screenshot in target/dashboard.png.
 */
@ExtendWith(TestDatabase.Extension.class)
class DashboardBrowserTest {

    /** Debian's packages (apt-get install chromium chromium-driver), so Selenium Manager never downloads a browser. */
    private static final Path CHROMIUM = Path.of("/usr/bin/chromium");
    private static final Path CHROMEDRIVER = Path.of("/usr/bin/chromedriver");
    /** The page polls every 2 s; this leaves room for a slow CI machine. */
    private static final Duration PATIENCE = Duration.ofSeconds(15);
    private static final Path SCREENSHOT = Path.of("target", "dashboard.png");

    private final TestDatabase db;
    private TaskServer server;
    private ChromeDriver browser;
    private WebDriverWait wait;

    DashboardBrowserTest(TestDatabase db) {
        this.db = db;
    }

    @BeforeEach
    void startServerAndBrowser(@TempDir Path profile) throws SQLException {
        if (!Files.isExecutable(CHROMIUM) || !Files.isExecutable(CHROMEDRIVER)) {
            fail("The dashboard test needs Debian's Chromium and chromedriver at " + CHROMIUM + " and " + CHROMEDRIVER
                    + "; install them with: apt-get update && apt-get install -y chromium chromium-driver (.ci/run does)");
        }
        db.reset();
        server = TaskServer.start(db.dataSource(), ServerOptions.defaults().withPort(0), new TaskMetrics());
        ChromeOptions options = new ChromeOptions();
        options.setBinary(CHROMIUM.toString());
        options.addArguments("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--user-data-dir=" + profile, "--window-size=1280,900");
        ChromeDriverService service = new ChromeDriverService.Builder()
                .usingDriverExecutable(new File(CHROMEDRIVER.toString()))
                .usingAnyFreePort()
                .build();
        browser = new ChromeDriver(service, options);
        wait = new WebDriverWait(browser, PATIENCE);
    }

    @AfterEach
    void stopServerAndBrowser() {
        if (browser != null) {
            browser.quit();
        }
        if (server != null) {
            server.close();
        }
    }

    @Test
    void the_dashboard_shows_the_queues_and_its_buttons_retry_dead_tasks_and_pause_queues() throws Exception {
        long dead = seed();

        browser.get("http://127.0.0.1:" + server.port() + "/");

        wait.until(ExpectedConditions.textToBe(inQueue("default", "count-ready"), "2"));
        wait.until(ExpectedConditions.textToBe(inQueue("default", "count-dead"), "1"));
        assertThat(browser.findElement(inQueue("default", "count-running")).getText()).isEqualTo("1");
        assertThat(browser.findElement(inQueue("default", "count-succeeded")).getText()).isEqualTo("9");
        assertThat(browser.findElement(inQueue("mail", "count-scheduled")).getText()).isEqualTo("1");
        assertThat(browser.findElement(inQueue("mail", "count-ready")).getText()).isEqualTo("2");
        assertThat(browser.findElement(inQueue("mail", "oldest-ready")).getText()).isEqualTo("1 min");
        WebElement row = browser.findElement(testId("dead-" + dead));
        assertThat(row.getText()).contains("charge_card").contains("SMTP relay refused");
        assertThat(browser.findElement(testId("status")).getDomAttribute("class"))
                .doesNotContain("is-error");
        Files.createDirectories(SCREENSHOT.getParent());
        Files.write(SCREENSHOT, browser.getScreenshotAs(OutputType.BYTES));

        browser.findElement(testId("retry-" + dead)).click();
        wait.until(ExpectedConditions.numberOfElementsToBe(testId("dead-" + dead), 0));
        wait.until(d -> state(dead).equals("queued"));
        wait.until(ExpectedConditions.textToBe(inQueue("default", "count-dead"), "0"));

        browser.findElement(testId("pause-mail")).click();
        wait.until(d -> paused("mail"));
        wait.until(ExpectedConditions.visibilityOfElementLocated(inQueue("mail", "paused")));
        assertThat(paused("default")).isFalse();
    }

    /**
     * The counts are read at every refresh (2 s), the per-minute chart less often (15 s): it is the dearest read of the
     * three (every task finished in the last hour). Counted from the browser's own record of its requests.
     */
    @Test
    void the_dashboard_reads_the_chart_less_often_than_the_counts() {
        browser.get("http://127.0.0.1:" + server.port() + "/");

        wait.until(d -> requests("api/queues") >= 3);
        assertThat(requests("api/throughput")).as("chart reads after three reads of the counts").isEqualTo(1);
        wait.until(ExpectedConditions.visibilityOfElementLocated(inQueue("default", "count-ready")));
    }

    /** How many requests the page has made to a URL containing {@code path}. */
    private long requests(String path) {
        return (Long) browser.executeScript("return performance.getEntriesByType('resource')"
                + ".filter(e => e.name.includes(arguments[0])).length", path);
    }

    /**
     * Default queue: 9 succeeded spread over the last minutes, 1 running, 1 dead, 2 ready. Mail queue: 2 ready and
     * 1 scheduled for later. Returns the id of the dead task.
     */
    private long seed() throws SQLException {
        try (Connection c = db.connect()) {
            Sql.update(c, "INSERT INTO tasktable.queue (name) VALUES ('mail')");
            for (int i = 0; i < 9; i++) {
                Sql.value(c, "SELECT tasktable.enqueue_task('resize_image', jsonb_build_object('n', ?::int))", i);
            }
            for (Map<String, Object> task : Sql.rows(c, "SELECT id, attempt FROM tasktable.claim_tasks(9, 'w1')")) {
                Sql.value(c, "SELECT tasktable.complete_task(?, ?)", task.get("id"), task.get("attempt"));
            }
            // Forge the finish times so the throughput chart has bars in several minutes.
            Sql.update(c, "UPDATE tasktable.finished_task SET finished_at = now() - (id % 5) * interval '1 minute'"
                    + " WHERE state = 'succeeded'");

            long dead = (Long) Sql.value(c, "SELECT tasktable.enqueue_task('charge_card', '{\"order\": 42}')");
            Sql.value(c, "SELECT tasktable.enqueue_task('send_report')");
            List<Map<String, Object>> claimed = Sql.rows(c, "SELECT id, attempt FROM tasktable.claim_tasks(2, 'w1')");
            assertThat(claimed).extracting(r -> r.get("id")).contains(dead);
            Sql.value(c, "SELECT tasktable.fail_task(?, ?, ?, false)", dead, attempt(claimed, dead),
                    "SMTP relay refused the message: 554 5.7.1 relay access denied for <billing@example.com>; "
                            + "the payment receipt could not be sent and the charge was rolled back");
            for (int i = 0; i < 2; i++) {
                Sql.value(c, "SELECT tasktable.enqueue_task('sync_inventory')");
            }

            Sql.value(c, "SELECT tasktable.enqueue_task('welcome_email', queue => 'mail')");
            Sql.value(c, "SELECT tasktable.enqueue_task('digest_email', queue => 'mail')");
            Sql.value(c, "SELECT tasktable.enqueue_task('reminder', queue => 'mail', run_at => now() + interval '1 hour')");
            Sql.update(c, "UPDATE tasktable.live_task SET run_at = now() - interval '95 seconds' WHERE queue = 'mail'"
                    + " AND kind = 'welcome_email'");
            return dead;
        }
    }

    private static int attempt(List<Map<String, Object>> claimed, long id) {
        return claimed.stream().filter(r -> r.get("id").equals(id)).map(r -> (Integer) r.get("attempt"))
                .findFirst().orElseThrow();
    }

    private static By testId(String id) {
        return By.cssSelector("[data-testid='" + id + "']");
    }

    /** An element inside the card of a queue. */
    private static By inQueue(String queue, String id) {
        return By.cssSelector("[data-testid='queue-" + queue + "'] [data-testid='" + id + "']");
    }

    private String state(long id) {
        try (Connection c = db.connect()) {
            return Sql.state(c, id);
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
    }

    private boolean paused(String queue) {
        try (Connection c = db.connect()) {
            return (Boolean) Sql.value(c, "SELECT paused FROM tasktable.queue WHERE name = ?", queue);
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
    }
}
