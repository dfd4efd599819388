# Runtime image for the jar built by `mvn package` (no build inside the image: the jar is the artifact).
FROM eclipse-temurin:21-jre
RUN useradd --system --uid 10001 tasktable
COPY target/tasktable.jar /app/tasktable.jar
USER tasktable
EXPOSE 8080
# In a container the server must listen beyond loopback; compose sets TASKTABLE_API_TOKEN for that.
ENTRYPOINT ["java", "-jar", "/app/tasktable.jar"]
CMD ["serve", "--host", "0.0.0.0"]
