package io.tasktable;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;

import org.jooq.JSONB;

/** JSON between jsonb columns and Jackson trees. */
final class Json {

    /** Thread-safe once configured; shared by every worker in the process. */
    static final ObjectMapper MAPPER = JsonMapper.builder().build();

    private Json() {
    }

    /** A jsonb value as the driver reads it: text. */
    static JsonNode parse(String jsonb) {
        // The empty object (the default payload, and every payload of bench drain) needs no parser: setting one up
        // for "{}" was 6% of the claim threads' samples (28 of 488) in bench drain at claims of 500 (JFR of the worker).
        if ("{}".equals(jsonb)) {
            return MAPPER.getNodeFactory().objectNode();
        }
        try {
            return MAPPER.readTree(jsonb);
        } catch (JsonProcessingException e) {
            // PostgreSQL only stores valid JSON in jsonb, so this is a bug, not a data problem.
            throw new IllegalStateException("jsonb from the database did not parse: " + e.getMessage(), e);
        }
    }

    static JSONB jsonb(JsonNode node) {
        return JSONB.valueOf(node.toString());
    }
}
