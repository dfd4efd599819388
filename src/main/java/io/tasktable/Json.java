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
